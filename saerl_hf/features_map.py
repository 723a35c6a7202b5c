"""The featurizer's ``datasets.map`` function: SAE latents pooled over each problem's own tokens.

For every row, the prompt is rendered exactly as the policy sees it (chat template), run through the reader
model only up to the SAE's layer (early exit, no LM head), encoded by the SAE token by token, pooled over the
problem's tokens (position 0, the attention sink, and padding never count; the poolings and their index space
are in :mod:`saerl_hf.pooling`), and the top-k pooled entries (or, with ``top_k`` null/0, every active one) are
written as ``sae_idx`` (int32) / ``sae_val`` (float32) with ``sae_l0``. ``dense=True`` (or ``features`` dense /
sae+dense) adds ``dense_mean``, the mean raw residual over the same tokens (the dense baseline and the dense
block of the hybrid features).

:class:`Featurizer` is a small picklable object (names, paths and settings only); the model and SAE load
lazily once per process. Running it over a dataset (fingerprint, cache file, provenance) and the CLI are in
:mod:`saerl_hf.features`, which re-exports the public names here.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections import Counter

import numpy as np
import torch

from saerl_hf import devices
from saerl_hf.activations import ActivationError, check_layer, prefix_cache, residual_stream, right_pad
from saerl_hf.featurize_config import PROMPT_FORMATS, FeaturizeConfig, FeaturizeError
from saerl_hf.pooling import (
    FEATURE_SETS,
    POOLINGS,
    active_latents,
    index_layout,
    pool_codes,
    pooled_width,
    sparse_rows,
)
from saerl_hf.reader import Reader, resolve_reader
from saerl_hf.sae_load import SAEHandle, SAELoadError

logger = logging.getLogger("saerl_hf.features")  # one logger for the featurizer, whichever module logs

# Per-process state: loaded (model, tokenizer, SAE) by settings, and counters of rows actually computed here
# (a cache hit computes none; tests and logs read this).
_RESOURCES: dict[tuple, tuple] = {}
_TORCH_PID = [os.getpid()]  # the process whose torch thread pool is live
STATS = {"rows": 0, "truncated": 0}


def resolve_dtype(dtype: str, device: str | None = None) -> str:
    """The reader dtype (``auto`` resolved by :func:`saerl_hf.devices.resolve_dtype`, without initialising CUDA);
    an unknown name raises :class:`FeaturizeError`."""
    try:
        return devices.resolve_dtype(dtype, device)
    except ValueError as err:
        raise FeaturizeError(str(err)) from None


class Featurizer:
    """Picklable ``Dataset.map(batched=True)`` function adding ``sae_idx`` / ``sae_val`` / ``sae_l0``.

    Holds only settings and the resolved :class:`~saerl_hf.reader.Reader` (``reader=``, as :func:`featurize`
    passes it; resolved lazily from the settings when none is given); ``__call__(batch, indices=None, rank=None)``
    works with ``with_indices`` and ``with_rank`` (rank r -> ``cuda:r`` when CUDA is there, else cpu).
    """

    def __init__(self, sae: str, model: str = "smollm2-135m", sae_id: str | None = None, layer: int | None = None,
                 pooling: str = "mean", top_k: int | None = None, prompt_format: str = "chat",
                 problem_column: str = "problem", source_column: str = "source", id_column: str = "id",
                 max_length: int = 1024, batch_size: int = 16, dense: bool = False, device: str | None = None,
                 dtype: str = "float32", trust_remote_code: bool = False, reuse_prefix: bool = True,
                 features: str = "sae", reader: Reader | None = None):
        if pooling not in POOLINGS:
            raise FeaturizeError(f"pooling must be one of {POOLINGS}, got '{pooling}'.")
        if features not in FEATURE_SETS:
            raise FeaturizeError(f"features must be one of {FEATURE_SETS}, got '{features}'.")
        if top_k is not None and int(top_k) < 0:
            raise FeaturizeError(f"top_k must be >= 0 (0 or None: keep every active latent), got {top_k}.")
        if prompt_format not in PROMPT_FORMATS:
            raise FeaturizeError(f"prompt_format must be one of {PROMPT_FORMATS}, got '{prompt_format}'.")
        self.sae, self.model, self.sae_id, self.layer = str(sae), model, sae_id, layer
        self.pooling, self.top_k, self.prompt_format = pooling, (int(top_k) or None) if top_k is not None else None, \
            prompt_format
        self.features = features
        self.problem_column, self.source_column, self.id_column = problem_column, source_column, id_column
        self.max_length, self.batch_size = int(max_length), int(batch_size)
        self.dense = bool(dense) or features != "sae"
        self.device, self.trust_remote_code = device, trust_remote_code
        self.dtype = reader.dtype if reader is not None else resolve_dtype(dtype, device)
        self._reader = reader
        self.reuse_prefix = bool(reuse_prefix)
        self._warned_truncation = False

    @classmethod
    def from_config(cls, config: FeaturizeConfig, reader: Reader | None = None) -> Featurizer:
        sae = reader.sae if reader is not None else config.sae_spec()
        return cls(sae=sae, model=config.model, sae_id=config.sae_id, layer=config.layer,
                   pooling=config.pooling, top_k=config.top_k, prompt_format=config.prompt_format,
                   problem_column=config.problem_column, source_column=config.source_column,
                   id_column=config.id_column, max_length=config.max_length, batch_size=config.batch_size,
                   dense=config.dense, device=config.device, dtype=config.dtype,
                   trust_remote_code=config.trust_remote_code, reuse_prefix=config.reuse_prefix,
                   features=config.features, reader=reader)

    # ------------------------------------------------------------------ identity

    def reader(self) -> Reader:
        """The resolved reader: the one given, else resolved from these settings once."""
        if self._reader is None:
            self._reader = resolve_reader(FeaturizeConfig(
                model=self.model, sae=self.sae, sae_id=self.sae_id, layer=self.layer, dtype=self.dtype,
                device=self.device, trust_remote_code=self.trust_remote_code))
        return self._reader

    def sae_handle(self) -> SAEHandle:
        return self.reader().sae_handle()

    def resolved_layer(self) -> int:
        """The requested layer, else the SAE's own hook layer, else the model's middle layer."""
        return self.reader().layer

    def provenance(self) -> dict:
        """What later steps and cards need to know about these columns (see saerl_hf.sparse)."""
        reader = self.reader()
        return {
            "model": reader.identity,
            "model_path": self.model,
            "model_revision": reader.revision,
            "layer": reader.layer,
            "hook": reader.hook,
            "sae": reader.sae_source,
            "sae_hash": reader.sae_hash,
            "d_sae": reader.d_sae,
            "d_in": reader.d_in,
            "pooling": self.pooling,
            "n_features": pooled_width(self.pooling, reader.d_sae),
            "index_layout": index_layout(self.pooling, reader.d_sae),
            "top_k": self.top_k,  # None: every active pooled latent kept
            "feature_set": self.features,
            "prompt_format": self.prompt_format,
            "problem_column": self.problem_column,
            "max_length": self.max_length,
            "dense": self.dense,
            "dtype": self.dtype,
            "first_token_dropped": True,
        }

    def settings(self) -> dict:
        """Everything that changes the output (batch size, device and prefix reuse change it only within float
        tolerance, so they are not part of it)."""
        prov = self.provenance()
        for derived in ("n_features", "index_layout", "feature_set"):  # follow from pooling, d_sae and `dense`: left
            prov.pop(derived)  # out so features made before these keys existed keep their cache entries
        prov["model_files"] = [list(entry) for entry in self.reader().model_files]
        return prov

    # ------------------------------------------------------------------ resources

    def _resources(self, device: str):
        key = (self.model, self.sae, self.sae_id, device, self.dtype, self.trust_remote_code)
        if key not in _RESOURCES:
            from saerl_hf.models import load_model, load_tokenizer

            reader = self.reader()
            handle = reader.sae_handle()
            model = load_model(reader.path, dtype=self.dtype, device=device, trust_remote_code=self.trust_remote_code)
            tokenizer = load_tokenizer(reader.path, trust_remote_code=self.trust_remote_code)
            if not getattr(tokenizer, "is_fast", False):
                raise FeaturizeError(f"The tokenizer of '{self.model}' is not a fast tokenizer; pooling over the "
                                     f"problem's tokens needs offset mappings. Fix: use a model with tokenizer.json.")
            if int(model.config.hidden_size) != handle.d_in:
                raise SAELoadError(f"SAE {handle.source} has d_in {handle.d_in} but '{self.model}' has hidden "
                                   f"size {model.config.hidden_size}. Fix: use an SAE trained on this reader model "
                                   f"(`saerl-hf train-sae --model {self.model}`) or the reader the SAE was made for.")
            import copy

            sae = copy.deepcopy(handle.sae).to(device) if device != "cpu" else handle.sae
            sae.eval()
            _RESOURCES[key] = (model, tokenizer, sae)
        return _RESOURCES[key]

    # ------------------------------------------------------------------ the map function

    def _row_name(self, batch: dict, i: int, indices) -> str:
        parts = []
        if indices is not None:
            parts.append(f"row {indices[i]}")
        else:
            parts.append(f"batch row {i}")
        if self.id_column in batch:
            parts.append(f"{self.id_column}={batch[self.id_column][i]!r}")
        return " ".join(parts)

    def _prompts(self, tokenizer, batch: dict, indices) -> tuple[list[list[int]], list[list[int]]]:
        """Token ids and, per row, the positions of the problem's own tokens (never 0, never padding)."""
        from saerl_hf.prompts import problem_span, render_prompt

        if self.problem_column not in batch:
            raise FeaturizeError(f"The dataset has no '{self.problem_column}' column (columns: {', '.join(batch)}). "
                                 f"Fix: pass --problem_column <name>.")
        problems = batch[self.problem_column]
        sources = batch.get(self.source_column) or [None] * len(problems)
        texts, spans = [], []
        for i, problem in enumerate(problems):
            if problem is not None and not isinstance(problem, str):
                raise FeaturizeError(f"{self._row_name(batch, i, indices)}: '{self.problem_column}' is not a string "
                                     f"(got {type(problem).__name__} {str(problem)[:40]!r}). Fix: cast or repair that "
                                     f"column before featurizing.")
            if not problem or not problem.strip():
                raise FeaturizeError(f"{self._row_name(batch, i, indices)}: '{self.problem_column}' is empty or "
                                     f"missing. Fix: drop or repair that row before featurizing.")
            text = render_prompt(tokenizer, problem, sources[i]) if self.prompt_format == "chat" else problem.strip()
            texts.append(text)
            spans.append(problem_span(text, problem))
        # Chat text carries its own special tokens; plain text gets the tokenizer's (e.g. BOS), like the policy.
        enc = tokenizer(texts, add_special_tokens=self.prompt_format == "plain", return_offsets_mapping=True)
        ids_out, positions_out, truncated = [], [], 0
        for i, (ids, offsets) in enumerate(zip(enc["input_ids"], enc["offset_mapping"])):
            if len(ids) > self.max_length:
                ids, offsets, truncated = ids[: self.max_length], offsets[: self.max_length], truncated + 1
            start, end = spans[i]
            # Position 0 is the attention sink (residual norm ~100x the rest): never pooled.
            positions = [t for t in range(1, len(ids)) if offsets[t][0] < end and offsets[t][1] > start]
            if not positions:
                raise FeaturizeError(f"{self._row_name(batch, i, indices)}: no problem token inside the first "
                                     f"{self.max_length} tokens. Fix: raise --max_length.")
            ids_out.append(list(ids))
            positions_out.append(positions)
        if truncated:
            STATS["truncated"] += truncated
            if not self._warned_truncation:
                self._warned_truncation = True
                msg = (f"{truncated} prompt(s) in this batch are longer than max_length={self.max_length} tokens and "
                       f"were truncated (pooled over the problem tokens that fit); further truncations are counted "
                       f"silently (featurize logs the total).")
                warnings.warn(msg, stacklevel=2)
                logger.warning(msg)
        return ids_out, positions_out

    def _encode_rows(self, row_tokens: list[torch.Tensor], sae, names: list[str], layer: int) -> list[tuple]:
        """SAE-encode the problem-token activations of a batch's rows in one call, pool each row, keep its top-k
        (or every active entry).

        Returns one ``(idx, val, l0, dense mean)`` per row; ``names[j]`` names row j in errors.
        """
        lengths = [len(t) for t in row_tokens]
        tokens = torch.cat(row_tokens).float()
        if not torch.isfinite(tokens).all():
            bad = next(j for j, t in enumerate(row_tokens) if not torch.isfinite(t).all())
            raise ActivationError(f"{names[bad]}: NaN/inf activations at block {layer} of '{self.model}'. Fix: check "
                                  f"the model weights/dtype (try float32).")
        codes = sae.encode(tokens.to(sae.dtype)).float()
        if not torch.isfinite(codes).all():
            bad = next(j for j, c in enumerate(codes.split(lengths)) if not torch.isfinite(c).all())
            raise ActivationError(f"{names[bad]}: NaN/inf SAE codes from finite activations. Fix: check the SAE "
                                  f"weights (reload or retrain it); a corrupt or mis-normalised SAE gives this.")
        pooled = torch.stack([pool_codes(c, self.pooling) for c in codes.split(lengths)])
        l0 = active_latents(pooled, self.pooling, int(sae.cfg.d_sae)).tolist()
        dense = [t.mean(0).cpu().numpy().astype(np.float32) for t in tokens.split(lengths)] if self.dense else None
        return [(idx, val, int(l0[j]), dense[j] if dense is not None else None)
                for j, (idx, val) in enumerate(sparse_rows(pooled, self.top_k))]

    @torch.no_grad()
    def __call__(self, batch: dict, indices=None, rank: int | None = None) -> dict:
        if isinstance(indices, int):  # map(with_rank=True) without with_indices passes rank second
            indices, rank = None, indices
        if os.getpid() != _TORCH_PID[0]:
            # A forked map worker (num_proc): the parent's OpenMP pool does not survive fork(), and torch ops
            # with several threads hang there. One thread per worker; the workers are the parallelism.
            torch.set_num_threads(1)
            _TORCH_PID[0] = os.getpid()
        device = self.device or devices.default_device(rank)
        model, tokenizer, sae = self._resources(device)
        layer = check_layer(model, self.resolved_layer())
        ids, positions = self._prompts(tokenizer, batch, indices)
        n = len(ids)
        rows_out: list = [None] * n
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        # Causal attention: the tokens after a row's last problem token never reach its pooled positions, so
        # they are not run; the tokens before its first one (the chat template's system turn, a few-shot
        # block) are shared by the rows and run once per map batch as a KV cache the rows continue from.
        # A prefix only one row has is not worth a cache: such rows run whole.
        shared = Counter(tuple(ids[i][: positions[i][0]]) for i in range(n)) if self.reuse_prefix else Counter()
        starts = [p[0] if shared[tuple(ids[i][: p[0]])] > 1 else 0 for i, p in enumerate(positions)]
        groups: dict[tuple, list[int]] = {}
        for i in range(n):
            groups.setdefault(tuple(ids[i][: starts[i]]), []).append(i)
        for prefix, members in groups.items():
            past = prefix_cache(model, list(prefix), layer, device) if prefix else None
            members.sort(key=lambda i: positions[i][-1] - starts[i])  # length-sorted: little padding
            for first in range(0, len(members), self.batch_size):
                rows = members[first : first + self.batch_size]
                segments = [ids[i][starts[i] : positions[i][-1] + 1] for i in rows]
                input_ids, mask = right_pad(segments, pad_id, device)
                acts = residual_stream(model, input_ids, mask, layer, past=past)
                encoded = self._encode_rows([acts[b, [p - starts[i] for p in positions[i]]] for b, i in enumerate(rows)],
                                            sae, [self._row_name(batch, i, indices) for i in rows], layer)
                for i, row in zip(rows, encoded):
                    rows_out[i] = row
        STATS["rows"] += n
        result = {"sae_idx": [r[0] for r in rows_out], "sae_val": [r[1] for r in rows_out],
                  "sae_l0": [r[2] for r in rows_out]}
        if self.dense:
            result["dense_mean"] = [r[3] for r in rows_out]
        return result

