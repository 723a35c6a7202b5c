"""Train samplers for TRL GRPO that keep ``RepeatSampler``'s contract but choose the prompt order.

TRL's contract (``trl.trainer.utils.RepeatSampler``): prompts are taken in chunks of
``B = generation_batch_size // num_generations`` unique indices; every index is repeated
``num_generations`` times consecutively; every chunk is repeated ``num_iterations * steps_per_generation``
times (the trainer only generates on the first copy); an incomplete last chunk is dropped; every process
builds the same sampler from the same seed and accelerate hands each process its slice. Only the order of
the unique prompts differs here:

- :class:`CurriculumRepeatSampler` follows ``curriculum_rank`` (SAERL's static order; the trainer first rebuilds
  it for the run's own ``B`` when it was built for another geometry, see :func:`saerl_hf.curriculum.fit_to_geometry`).
- :class:`AdaptiveDifficultySampler` picks each chunk nearest to a target difficulty that moves with the
  observed reward (AdaRFT-style: ``T <- clip(T + eta * tanh(alpha * (R - beta)), 0, 1)``).

:class:`CurriculumGRPOTrainer` swaps them in through ``_get_train_sampler`` (TRL's override point), feeds
the adaptive sampler from an :class:`AdaptiveCurriculumCallback`, and writes the sampler state as JSON into
each checkpoint so that a resumed run sees exactly the prompts an uninterrupted run would.

The trainer lives in :mod:`saerl_hf.grpo_trainer` (it imports TRL's ``GRPOTrainer``); it stays importable from
here.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sized

import numpy as np
from torch.utils.data import Sampler
from transformers import TrainerCallback

from saerl_hf.curriculum import RANK_COLUMN, CurriculumError, _column

logger = logging.getLogger(__name__)

SAMPLER_STATE_FILE = "curriculum_sampler.json"
EPOCH_ORDERS = ("repeat", "band_shuffle")
SAMPLERS = ("curriculum", "adaptive", "default")


def _expand(chunks: np.ndarray, mini_repeat_count: int, repeat_count: int) -> np.ndarray:
    """(num_chunks, B) unique prompts -> the flat index stream RepeatSampler would yield for that chunk order."""
    per_chunk = np.repeat(chunks, mini_repeat_count, axis=1)  # each index G times in a row
    return np.tile(per_chunk, (1, repeat_count)).reshape(-1)  # each chunk R times


def _check_sizes(mini_repeat_count: int, batch_size: int, repeat_count: int) -> None:
    for name, value in (("mini_repeat_count", mini_repeat_count), ("batch_size", batch_size), ("repeat_count", repeat_count)):
        if int(value) < 1:
            raise CurriculumError(f"{name} must be >= 1, got {value}")


class CurriculumRepeatSampler(Sampler[int]):
    """``RepeatSampler`` that walks the prompts in ``curriculum_rank`` order instead of a random permutation.

    Epoch 0 follows the order exactly. Later epochs either repeat it (``epoch_order="repeat"``) or shuffle
    whole generation batches within ``num_bands`` contiguous bands of the order (``"band_shuffle"``): batch
    composition (cluster-first + mixing) and the easy-to-hard progression survive, the exact sequence varies.
    The trainer calls :meth:`set_epoch` each epoch, so resumed runs rebuild the same epoch order.
    """

    def __init__(
        self,
        data_source: Sized,
        mini_repeat_count: int,
        batch_size: int = 1,
        repeat_count: int = 1,
        order=None,
        seed: int = 0,
        epoch_order: str = "repeat",
        num_bands: int = 4,
        rank_column: str = RANK_COLUMN,
    ):
        _check_sizes(mini_repeat_count, batch_size, repeat_count)
        if epoch_order not in EPOCH_ORDERS:
            raise CurriculumError(f"epoch_order must be one of {EPOCH_ORDERS}, got '{epoch_order}'")
        self.data_source = data_source
        self.mini_repeat_count = int(mini_repeat_count)
        self.batch_size = int(batch_size)
        self.repeat_count = int(repeat_count)
        self.num_samples = len(data_source)
        self.seed = int(seed or 0)
        self.epoch_order = epoch_order
        self.num_bands = max(1, int(num_bands))
        self.epoch = 0
        if order is None:
            cols = getattr(data_source, "column_names", None) or []
            if rank_column not in cols:
                raise CurriculumError(
                    f"the train dataset has no '{rank_column}' column (columns: {', '.join(cols)}). Fix: run "
                    f"saerl_hf.curriculum.add_curriculum_rank(ds, prompts_per_batch, curriculum=...) or the "
                    f"curate pipeline, or use sampler='default'."
                )
            rank = _column(data_source, rank_column).astype(np.int64)
            order = np.argsort(rank, kind="stable")
            if not np.array_equal(rank[order], np.arange(self.num_samples)):
                raise CurriculumError(f"'{rank_column}' is not a permutation of 0..{self.num_samples - 1}; rebuild it.")
        self.order = np.asarray(order, dtype=np.int64)
        if self.order.shape != (self.num_samples,):
            raise CurriculumError(f"order has {self.order.size} entries for {self.num_samples} rows")
        self.num_chunks = self.num_samples // self.batch_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def epoch_chunks(self, epoch: int | None = None) -> np.ndarray:
        """(num_chunks, B) unique prompt indices of an epoch, in training order (tail dropped)."""
        epoch = self.epoch if epoch is None else int(epoch)
        chunks = self.order[: self.num_chunks * self.batch_size].reshape(self.num_chunks, self.batch_size)
        if self.epoch_order == "band_shuffle" and epoch > 0 and self.num_chunks > 1:
            rng = np.random.default_rng([self.seed, epoch])
            perm = np.concatenate([rng.permutation(band) for band in np.array_split(np.arange(self.num_chunks), self.num_bands)])
            chunks = chunks[perm]
        return chunks

    def indices(self, epoch: int | None = None) -> np.ndarray:
        """The whole index stream of an epoch (what ``__iter__`` yields), as numpy."""
        return _expand(self.epoch_chunks(epoch), self.mini_repeat_count, self.repeat_count)

    def __iter__(self) -> Iterator[int]:
        yield from self.indices().tolist()

    def __len__(self) -> int:
        return self.num_chunks * self.batch_size * self.mini_repeat_count * self.repeat_count


class AdaptiveDifficultySampler(Sampler[int]):
    """RepeatSampler-compatible sampler whose next chunk is the B unused prompts nearest a moving target.

    Difficulty is used as a quantile in [0, 1] (rank of predicted ``difficulty``, seeded tie-break), so ``eta``
    is scale-free. Round ``k`` (the k-th chunk over all epochs) uses the target after the rewards of rounds
    ``< k - lag + 1``: the dataloader prefetches ahead of training, so the reward of the round just before is
    not known yet. ``lag`` is set by the trainer; a missing reward counts in ``stale_rounds``. Every prompt is
    used at most once per epoch. The state (rewards per round) is plain JSON; replaying it reproduces every
    chunk, which is what makes resume exact.
    """

    def __init__(
        self,
        data_source: Sized,
        mini_repeat_count: int,
        batch_size: int = 1,
        repeat_count: int = 1,
        difficulty=None,
        seed: int = 0,
        target: float = 0.0,
        eta: float = 0.05,
        alpha: float = 2.0,
        beta: float = 0.5,
        lag: int = 2,
        difficulty_column: str = "difficulty",
    ):
        _check_sizes(mini_repeat_count, batch_size, repeat_count)
        self.data_source = data_source
        self.mini_repeat_count = int(mini_repeat_count)
        self.batch_size = int(batch_size)
        self.repeat_count = int(repeat_count)
        self.num_samples = len(data_source)
        self.seed = int(seed or 0)
        self.target_init = float(target)
        self.eta, self.alpha, self.beta = float(eta), float(alpha), float(beta)
        self.lag = max(1, int(lag))
        if not 0.0 <= self.target_init <= 1.0:
            raise CurriculumError(f"target is a difficulty quantile in [0, 1], got {target}")
        if difficulty is None:
            cols = getattr(data_source, "column_names", None) or []
            if difficulty_column not in cols:
                raise CurriculumError(
                    f"the train dataset has no '{difficulty_column}' column. Fix: run the difficulty probe "
                    f"(saerl-hf curate) or pass difficulty=..."
                )
            difficulty = _column(data_source, difficulty_column)
        d = np.asarray(difficulty, dtype=np.float64)
        if d.shape != (self.num_samples,) or not np.all(np.isfinite(d)):
            bad = np.flatnonzero(~np.isfinite(d))
            raise CurriculumError(
                f"difficulty must be finite for all {self.num_samples} rows"
                + (f" (row {int(bad[0])} is not)" if bad.size else f", got shape {d.shape}")
            )
        tie = np.random.default_rng(self.seed).random(self.num_samples)
        self.sorted_idx = np.lexsort((tie, d)).astype(np.int64)  # quantile position -> row
        self.num_chunks = self.num_samples // self.batch_size
        self.epoch = 0
        self.rewards: list[float | None] = []  # observed mean reward per global round
        self.stale_rounds = 0
        self._targets: list[float] = [self.target_init]  # _targets[k]: target used for round k

    # -- feedback -------------------------------------------------------------------------------------------
    def observe(self, round_index: int, reward: float) -> None:
        """Record the mean group reward of a round (the callback calls this after each optimizer step)."""
        round_index = int(round_index)
        if round_index < 0:
            raise ValueError(f"round_index must be >= 0, got {round_index}")
        if len(self.rewards) <= round_index:
            self.rewards.extend([None] * (round_index + 1 - len(self.rewards)))
        value = float(reward)
        self.rewards[round_index] = value if math.isfinite(value) else None

    def target_for(self, round_index: int) -> float:
        """Target quantile used for a round: replay of the update rule over the rewards known so far."""
        while len(self._targets) <= round_index:
            k = len(self._targets)  # computing the target of round k from round k - lag
            src = k - self.lag
            t = self._targets[-1]
            if src >= 0:
                r = self.rewards[src] if src < len(self.rewards) else None
                if r is None:
                    self.stale_rounds += 1
                    logger.warning("adaptive sampler: no reward yet for round %d; round %d keeps target %.3f", src, k, t)
                else:
                    t = float(np.clip(t + self.eta * math.tanh(self.alpha * (r - self.beta)), 0.0, 1.0))
            self._targets.append(t)
        return self._targets[round_index]

    @property
    def target(self) -> float:
        return self._targets[-1]

    # -- sampling -------------------------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _epoch_chunks(self) -> Iterator[np.ndarray]:
        """Lazily choose each chunk when it is needed (so the freshest observed rewards are used)."""
        n = self.num_samples
        # union-find style "nearest unused slot to the left / right" pointers over the quantile slots
        left_p, right_p = list(range(-1, n - 1)), list(range(1, n + 1))
        used_l = [False] * n

        def find(ptr, i):  # nearest unused slot from i in ptr's direction (-1 / n if none), path compression
            root = i
            while 0 <= root < n and used_l[root]:
                root = ptr[root]
            while 0 <= i < n and used_l[i] and i != root:
                ptr[i], i = root, ptr[i]
            return root

        base = self.epoch * self.num_chunks
        for j in range(self.num_chunks):
            t = self.target_for(base + j)
            pos = int(round(t * (n - 1)))
            lo, hi = find(left_p, pos), find(right_p, pos)
            if hi == lo:  # pos itself is unused
                hi = find(right_p, pos + 1) if pos + 1 < n else n
            picked = []
            while len(picked) < self.batch_size:
                take_lo = hi >= n or (lo >= 0 and pos - lo <= hi - pos)
                slot = lo if take_lo else hi
                picked.append(slot)
                used_l[slot] = True
                if take_lo:
                    lo = find(left_p, slot - 1) if slot > 0 else -1
                else:
                    hi = find(right_p, slot + 1) if slot + 1 < n else n
            picked.sort()  # easy -> hard inside the chunk; order inside a chunk does not matter to TRL
            yield self.sorted_idx[np.asarray(picked, dtype=np.int64)]

    def __iter__(self) -> Iterator[int]:
        for chunk in self._epoch_chunks():
            yield from _expand(chunk[None, :], self.mini_repeat_count, self.repeat_count).tolist()

    def __len__(self) -> int:
        return self.num_chunks * self.batch_size * self.mini_repeat_count * self.repeat_count

    # -- state ----------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """JSON-able state: parameters plus the reward history (targets are replayed from it)."""
        return {
            "type": type(self).__name__,
            "version": 1,
            "num_samples": self.num_samples,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "target_init": self.target_init,
            "eta": self.eta,
            "alpha": self.alpha,
            "beta": self.beta,
            "lag": self.lag,
            "rewards": list(self.rewards),
            "targets": list(self._targets),  # targets of the rounds chosen so far (replayed on load)
            "stale_rounds": self.stale_rounds,
        }

    def load_state_dict(self, state: dict) -> None:
        for key in ("num_samples", "batch_size", "seed"):
            if state.get(key) != getattr(self, key):
                raise CurriculumError(
                    f"sampler state was saved with {key}={state.get(key)}, this run has {getattr(self, key)}. "
                    f"Fix: resume with the same dataset, seed and batch sizes, or start a fresh run."
                )
        self.target_init = float(state["target_init"])
        self.eta, self.alpha, self.beta = float(state["eta"]), float(state["alpha"]), float(state["beta"])
        self.lag = int(state["lag"])
        self.rewards = [None if r is None else float(r) for r in state["rewards"]]
        self.stale_rounds = int(state.get("stale_rounds", 0))
        self._targets = [self.target_init]


class AdaptiveCurriculumCallback(TrainerCallback):
    """Feeds the observed mean group reward of each generation round to an :class:`AdaptiveDifficultySampler`.

    The trainer calls :meth:`record` when a round's rewards are known; the callback hands them to the sampler
    at the end of the optimizer step (the same point on every process, with the globally gathered mean).
    """

    def __init__(self, sampler: AdaptiveDifficultySampler | None = None):
        self.sampler = sampler
        self._pending: list[tuple[int, float]] = []

    def record(self, round_index: int, reward: float) -> None:
        self._pending.append((int(round_index), float(reward)))

    def flush(self) -> None:
        if self.sampler is None:
            return
        for round_index, reward in self._pending:
            self.sampler.observe(round_index, reward)
        self._pending.clear()

    def on_step_end(self, args, state, control, **kwargs):
        self.flush()
        return control


def __getattr__(name: str):
    # Lazy: the trainer imports this module (and TRL's GRPOTrainer); importing the samplers stays light.
    if name == "CurriculumGRPOTrainer":
        from saerl_hf.grpo_trainer import CurriculumGRPOTrainer

        return CurriculumGRPOTrainer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
