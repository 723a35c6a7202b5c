"""Sampler contract vs TRL's own RepeatSampler, adaptive sampler behaviour, and real GRPO runs (tiny model).

The GRPO runs record the ``id`` column a reward function receives (TRL passes dataset columns as kwargs),
which is the ground truth of what the trainer trained on, in order.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from accelerate.data_loader import BatchSamplerShard
from datasets import Dataset
from torch.utils.data import BatchSampler
from trl.trainer.utils import RepeatSampler

from saerl_hf.curriculum import CurriculumError, add_curriculum_rank, sort_by_curriculum
from saerl_hf.samplers import (
    SAMPLER_STATE_FILE,
    AdaptiveDifficultySampler,
    CurriculumGRPOTrainer,
    CurriculumRepeatSampler,
)

GRID = [  # (n, num_generations G, unique prompts per batch B, repeat_count R)
    (7, 2, 3, 4),  # TRL's docstring example
    (12, 3, 4, 2),
    (10, 1, 3, 1),
    (9, 4, 9, 1),
    (25, 2, 4, 3),
]


def _torch_perm(n, seed):
    g = torch.Generator()
    g.manual_seed(seed)
    return torch.randperm(n, generator=g).numpy()


@pytest.mark.parametrize("n,g,b,r", GRID)
def test_same_stream_as_trl_repeat_sampler(n, g, b, r):
    """Given TRL's own order (identity, or its seeded permutation) we yield exactly what RepeatSampler yields."""
    data = list(range(n))
    ours = CurriculumRepeatSampler(data, g, b, r, order=np.arange(n))
    trl = RepeatSampler(data, mini_repeat_count=g, batch_size=b, repeat_count=r, shuffle=False)
    assert list(ours) == list(trl)
    assert len(ours) == len(trl) == len(list(ours))
    ours = CurriculumRepeatSampler(data, g, b, r, order=_torch_perm(n, 42))
    trl = RepeatSampler(data, mini_repeat_count=g, batch_size=b, repeat_count=r, shuffle=True, seed=42)
    assert list(ours) == list(trl)


@pytest.mark.parametrize("num_processes", [1, 2, 3])
@pytest.mark.parametrize("per_device,g,spg", [(2, 2, 1), (3, 3, 2), (4, 2, 2)])
def test_process_shards_match_trl(num_processes, per_device, g, spg):
    """Under accelerate's sharding every process gets the same slices TRL would give it; groups stay whole."""
    gen_batch = per_device * num_processes * spg
    if gen_batch % g:
        pytest.skip("TRL rejects this combination too")
    b, r, n = gen_batch // g, spg, 5 * (gen_batch // g) + 1  # +1: a tail that must be dropped
    data = list(range(n))
    order = _torch_perm(n, 7)

    def shards(make):
        out = []
        for p in range(num_processes):  # each process builds its own sampler: identical by construction
            bs = BatchSampler(make(), batch_size=per_device * spg, drop_last=False)
            out.append(list(BatchSamplerShard(bs, num_processes=num_processes, process_index=p, even_batches=True)))
        return out

    ours = shards(lambda: CurriculumRepeatSampler(data, g, b, r, order=order))
    trl = shards(lambda: RepeatSampler(data, mini_repeat_count=g, batch_size=b, repeat_count=r, seed=7))
    assert ours == trl
    # the global generation batch of every round (all processes, first micro-batch) is B prompts x G copies
    stream = list(CurriculumRepeatSampler(data, g, b, r, order=order))
    per_round = b * g * r
    for k in range(len(stream) // per_round):
        gen = np.sort(np.concatenate([ours[p][k * spg] for p in range(num_processes)]))  # TRL generates on these
        assert np.array_equal(np.unique(gen), np.sort(order[k * b : (k + 1) * b]))
        assert np.all(np.bincount(gen)[np.unique(gen)] == g)
        assert stream[k * per_round : (k + 1) * per_round] == stream[k * per_round : k * per_round + b * g] * r
    if b > 1:
        assert int(order[-1]) not in set(stream)  # the incomplete tail chunk is never yielded, as in TRL


def _ranked(n=24, b=4, seed=0):
    rng = np.random.default_rng(seed)
    ds = Dataset.from_dict({"id": [f"q{i}" for i in range(n)], "cluster": rng.integers(0, 3, n), "difficulty": rng.random(n)})
    return add_curriculum_rank(ds, b, curriculum="saerl", seed=seed)


def test_follows_curriculum_rank_and_drops_the_tail():
    ds = _ranked(n=23, b=4)
    s = CurriculumRepeatSampler(ds, mini_repeat_count=2, batch_size=4, repeat_count=1)
    rank_order = np.argsort(ds["curriculum_rank"])
    stream = list(s)
    assert stream[::2] == rank_order[:20].tolist() and stream[1::2] == stream[::2]
    assert len(s) == 40
    with pytest.raises(CurriculumError, match="add_curriculum_rank"):
        CurriculumRepeatSampler(ds.remove_columns("curriculum_rank"), 2, 4)


def test_epochs_repeat_or_band_shuffle():
    ds = _ranked(n=48, b=4)
    rep = CurriculumRepeatSampler(ds, 2, 4, 1, epoch_order="repeat")
    e0 = rep.epoch_chunks(0)
    assert np.array_equal(rep.epoch_chunks(3), e0)
    band = CurriculumRepeatSampler(ds, 2, 4, 1, seed=1, epoch_order="band_shuffle", num_bands=3)
    assert np.array_equal(band.epoch_chunks(0), e0)  # epoch 0 is the curriculum itself
    e1, e2 = band.epoch_chunks(1), band.epoch_chunks(2)
    assert not np.array_equal(e1, e0) and not np.array_equal(e1, e2)
    for lo, hi in ((0, 4), (4, 8), (8, 12)):  # 12 batches in 3 bands: batches stay whole, inside their band
        assert {tuple(x) for x in e1[lo:hi]} == {tuple(x) for x in e0[lo:hi]}
    band.set_epoch(2)
    assert list(band)[::2] == e2.reshape(-1).tolist()
    again = CurriculumRepeatSampler(ds, 2, 4, 1, seed=1, epoch_order="band_shuffle", num_bands=3)
    assert np.array_equal(again.epoch_chunks(2), e2)


def _chunks(stream, g, b, r):
    per = b * g * r
    out = []
    for k in range(len(stream) // per):
        block = stream[k * per : (k + 1) * per]
        first = block[: b * g]
        assert block == first * r  # the chunk is repeated R times
        assert all(first[i] == first[i - i % g] for i in range(len(first)))  # each index G times in a row
        out.append(first[::g])
    return out


def test_adaptive_contract_and_easy_start():
    d = np.linspace(0, 1, 40)[::-1].copy()  # row 39 is the easiest
    s = AdaptiveDifficultySampler(list(range(40)), mini_repeat_count=3, batch_size=4, repeat_count=2, difficulty=d)
    chunks = _chunks(list(s), 3, 4, 2)
    assert len(chunks) == 10 and len(list(s)) == len(s) == 40 * 3 * 2
    flat = [i for c in chunks for i in c]
    assert sorted(flat) == list(range(40))  # each prompt once per epoch
    assert chunks[0] == [39, 38, 37, 36]  # no reward observed: target stays at the easiest quantile
    assert s.stale_rounds > 0  # rewards were expected (lag 2) and never came


def _drive(sampler, reward_of_chunk, lag):
    """Simulate the trainer: consume chunk k, then observe its reward (the sampler runs `lag` rounds ahead)."""
    seen = []
    it = iter(sampler)
    per = sampler.batch_size * sampler.mini_repeat_count * sampler.repeat_count
    for k in range(len(sampler) // per):
        block = [next(it) for _ in range(per)]
        chunk = block[: sampler.batch_size * sampler.mini_repeat_count][:: sampler.mini_repeat_count]
        seen.append(chunk)
        sampler.observe(k, reward_of_chunk(chunk))
    return seen


def test_adaptive_target_follows_reward():
    n = 200
    d = np.random.default_rng(0).random(n)
    q = np.argsort(np.argsort(d)) / (n - 1)  # difficulty quantile of each row
    hi = AdaptiveDifficultySampler(list(range(n)), 2, 5, 1, difficulty=d, eta=0.1, lag=1)
    easy_ok = _drive(hi, lambda c: float(np.mean(q[c] < 0.5)), lag=1)  # solves everything below the median
    means = [q[c].mean() for c in easy_ok]
    assert means[0] < 0.05 and max(means[5:15]) > 0.3  # the target climbs while rewards are high
    targets = hi.state_dict()["targets"]
    assert 0.4 < np.mean(targets[10:30]) < 0.75  # ...and settles where reward ~ beta = 0.5
    assert hi.stale_rounds == 0
    lo = AdaptiveDifficultySampler(list(range(n)), 2, 5, 1, difficulty=d, eta=0.1, lag=1)
    _drive(lo, lambda c: 0.0, lag=1)
    assert max(lo.state_dict()["targets"]) == 0.0


def test_adaptive_state_is_json_and_replays_exactly():
    n = 60
    d = np.random.default_rng(1).random(n)
    a = AdaptiveDifficultySampler(list(range(n)), 2, 3, 1, difficulty=d, eta=0.2, lag=2, seed=5)
    seen = _drive(a, lambda c: float(np.mean(d[c] < 0.7)), lag=2)
    state = json.loads(json.dumps(a.state_dict()))
    b = AdaptiveDifficultySampler(list(range(n)), 2, 3, 1, difficulty=d, eta=0.0, lag=1, seed=5)
    b.load_state_dict(state)
    assert _chunks(list(b), 2, 3, 1) == seen  # replayed from the saved rewards alone
    assert b.state_dict()["targets"][: len(seen)] == state["targets"][: len(seen)]
    c = AdaptiveDifficultySampler(list(range(n + 1)), 2, 3, 1, difficulty=np.r_[d, 0.5], seed=5)
    with pytest.raises(CurriculumError, match="num_samples"):
        c.load_state_dict(state)


# ----------------------------------------------------------------------------- real GRPO runs, tiny model


class Recorder:
    """A TRL reward function that records which prompt ids it was given (one per group) and rewards easy ones."""

    __name__ = "recorder"

    def __init__(self, num_generations):
        self.g = num_generations
        self.ids: list[str] = []

    def __call__(self, prompts, completions, id, difficulty, **kwargs):
        self.ids.extend(id[:: self.g])
        return [1.0 if x < 0.6 else 0.0 for x in difficulty]  # depends on the prompt only: resume is comparable


def _train_set(data_dir, n=24, b=2):
    from saerl_hf.data import load_math_dataset
    from saerl_hf.prompts import build_messages

    ds = load_math_dataset("mawps", limit=n)
    rng = np.random.default_rng(0)
    ds = ds.add_column("cluster", rng.integers(0, 3, len(ds))).add_column("difficulty", rng.random(len(ds)))
    ds = ds.map(lambda r: {"prompt": build_messages(r["problem"], r["source"])})
    return add_curriculum_rank(ds, b, curriculum="saerl", seed=0)


def _config(tmp_path, max_steps, **kw):
    from trl import GRPOConfig

    base = dict(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        num_generations=2,
        max_completion_length=4,
        max_steps=max_steps,
        learning_rate=1e-4,
        logging_steps=1,
        save_strategy="no",
        use_cpu=True,
        bf16=False,
        report_to="none",
        seed=0,
        activation_checkpointing=False,
        disable_tqdm=True,
    )
    base.update(kw)
    return GRPOConfig(**base)


def test_grpo_reward_function_sees_curriculum_rank_order(tiny_model_dir, data_dir, tmp_path):
    from trl import GRPOTrainer

    ds = _train_set(data_dir)
    rank_ids = [ds["id"][i] for i in np.argsort(ds["curriculum_rank"])]
    rec = Recorder(2)
    CurriculumGRPOTrainer(
        model=tiny_model_dir, reward_funcs=rec, args=_config(tmp_path / "a", 3), train_dataset=ds, sampler="curriculum"
    ).train()
    assert rec.ids == rank_ids[:6]  # 3 steps x 2 unique prompts, exactly in rank order
    # zero-patch path: stock GRPOTrainer, shuffle_dataset=False, rows sorted by rank -> the same sequence
    zero = Recorder(2)
    GRPOTrainer(
        model=tiny_model_dir,
        reward_funcs=zero,
        args=_config(tmp_path / "b", 3, shuffle_dataset=False),
        train_dataset=sort_by_curriculum(ds),
    ).train()
    assert zero.ids == rank_ids[:6]
    # vanilla GRPO (TRL's shuffled sampler) does not follow it: the test can fail
    vanilla = Recorder(2)
    CurriculumGRPOTrainer(
        model=tiny_model_dir, reward_funcs=vanilla, args=_config(tmp_path / "c", 3), train_dataset=ds, sampler="default"
    ).train()
    assert vanilla.ids != rank_ids[:6]


class StopAt:
    """Stop training after a given global step (a stand-in for a killed job; the checkpoint is on disk)."""

    def __init__(self, step):
        from transformers import TrainerCallback

        outer = self

        class _CB(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                if state.global_step >= outer.step:
                    control.should_training_stop = True
                return control

        self.step = step
        self.callback = _CB()


@pytest.mark.parametrize(
    "sampler,kwargs,n,max_steps,stop",
    [
        ("adaptive", {"eta": 0.3, "beta": 0.5}, 24, 6, 3),
        ("curriculum", {"epoch_order": "band_shuffle", "num_bands": 1}, 8, 6, 3),  # crosses epochs (4 rounds each)
    ],
)
def test_grpo_resume_sees_the_same_prompts(tiny_model_dir, data_dir, tmp_path, sampler, kwargs, n, max_steps, stop):
    ds = _train_set(data_dir, n=n)

    def run(out, resume=None, stop_at=None):
        rec = Recorder(2)
        trainer = CurriculumGRPOTrainer(
            model=tiny_model_dir,
            reward_funcs=rec,
            args=_config(out, max_steps, save_strategy="steps", save_steps=stop),
            train_dataset=ds,
            sampler=sampler,
            sampler_kwargs=kwargs,
        )
        if stop_at:
            trainer.add_callback(StopAt(stop_at).callback)
        trainer.train(resume_from_checkpoint=resume)
        return rec.ids, trainer

    full_ids, full = run(tmp_path / "full")
    first_ids, _ = run(tmp_path / "cut", stop_at=stop)
    assert (tmp_path / "cut" / f"checkpoint-{stop}").is_dir()
    rest_ids, resumed = run(tmp_path / "cut", resume=True)
    assert len(full_ids) == 2 * max_steps
    assert first_ids + rest_ids == full_ids
    if sampler == "adaptive":
        saved = json.loads((tmp_path / "cut" / f"checkpoint-{stop}" / SAMPLER_STATE_FILE).read_text())
        assert len(saved["rewards"]) == stop
        a, b = full.curriculum_sampler.state_dict(), resumed.curriculum_sampler.state_dict()
        assert a["rewards"] == b["rewards"] and a["targets"] == b["targets"]
        assert a["stale_rounds"] == b["stale_rounds"] == 0
        assert len(set(a["targets"])) > 2  # the target actually moved during the run
        logged = [h["curriculum/target"] for h in full.state.log_history if "curriculum/target" in h]
        assert len(logged) == max_steps
    else:
        rank_ids = [ds["id"][i] for i in np.argsort(ds["curriculum_rank"])]
        assert full_ids[:8] == rank_ids  # epoch 0 is the curriculum order, every prompt once
        chunks = [tuple(rank_ids[i : i + 2]) for i in range(0, 8, 2)]
        epoch1 = [tuple(full_ids[i : i + 2]) for i in (8, 10)]
        assert epoch1 != chunks[:2] and set(epoch1) <= set(chunks)  # epoch 1 reshuffles whole batches


_TWO_PROCESS_SCRIPT = '''
import json, sys
sys.path.insert(0, sys.argv[3])
from accelerate import PartialState
from tests.test_samplers import Recorder, _config, _train_set
from saerl_hf.samplers import CurriculumGRPOTrainer
state = PartialState()
rec = Recorder(2)
CurriculumGRPOTrainer(model=sys.argv[1], reward_funcs=rec, args=_config(sys.argv[2], 3, per_device_train_batch_size=2),
                      train_dataset=_train_set(None, n=24, b=2), sampler="curriculum").train()
json.dump(rec.ids, open(f"{sys.argv[2]}/ids{state.process_index}.json", "w"))
'''


def test_two_real_processes_split_each_round_of_the_same_order(tiny_model_dir, data_dir, tmp_path):
    """torchrun, 2 CPU processes (gloo): each process gets its slice of every round; together, rank order."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    script = tmp_path / "two.py"
    script.write_text(_TWO_PROCESS_SCRIPT)
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    port = str(29500 + os.getpid() % 1000)
    proc = subprocess.run(
        [torchrun, "--nproc_per_node", "2", "--master_port", port, str(script), tiny_model_dir, str(tmp_path), str(root)],
        cwd=root, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    p0, p1 = (json.loads((tmp_path / f"ids{r}.json").read_text()) for r in (0, 1))
    ds = _train_set(data_dir, n=24, b=2)
    rank_ids = [ds["id"][i] for i in np.argsort(ds["curriculum_rank"])]
    # generation batch = 2 per device x 2 processes = 2 prompts x 2 completions: one prompt per process per step
    assert [x for pair in zip(p0, p1) for x in pair] == rank_ids[:6]


# ----------------------------------------------------------------------------- one curated order, any geometry


class GroupRecorder(Recorder):
    """Records the prompt id of every group and checks that each group's G completions share one prompt."""

    __name__ = "group_recorder"

    def __call__(self, prompts, completions, id, difficulty, **kwargs):
        assert len(id) % self.g == 0 and all(id[i] == id[i - i % self.g] for i in range(len(id))), id
        return super().__call__(prompts, completions, id, difficulty, **kwargs)


def _curated_set(n=30, built_for=5):
    """What `saerl-hf curate` stores: ranked for `built_for` prompts per batch, rows in rank order."""
    return sort_by_curriculum(_train_set(None, n=n, b=built_for))


def _train_with_setup(model_dir, out, ds, max_steps, **config):
    """grpo.main's path: `_sampler_setup` (curriculum: rank) then CurriculumGRPOTrainer; returns recorded ids."""
    from saerl_hf.grpo import GRPOScriptArguments, _sampler_setup

    args = _config(out, max_steps, **config)
    ds, sampler, kwargs = _sampler_setup(GRPOScriptArguments(curriculum="rank"), args, ds)
    rec = GroupRecorder(args.num_generations)
    CurriculumGRPOTrainer(model=model_dir, reward_funcs=rec, args=args, train_dataset=ds, sampler=sampler,
                          sampler_kwargs=kwargs).train()
    return rec.ids


def _intended_ids(ds, b):
    from saerl_hf.curriculum import curriculum_order

    order = curriculum_order(len(ds), b, "saerl", np.array(ds["cluster"]), np.array(ds["difficulty"]), 0.25, seed=0)
    return [ds["id"][i] for i in order]


_GEOMETRY_SCRIPT = '''
import json, sys
sys.path.insert(0, sys.argv[3])
from accelerate import PartialState
from tests.test_samplers import _curated_set, _train_with_setup
state = PartialState()
ids = _train_with_setup(sys.argv[1], sys.argv[2], _curated_set(), 2, per_device_train_batch_size=4)
json.dump(ids, open(f"{sys.argv[2]}/ids{state.process_index}.json", "w"))
'''


def test_one_curated_order_trains_at_three_geometries(tiny_model_dir, data_dir, tmp_path):
    """Curated for 5 prompts per batch; trained with B = 2 (1 process), B = 4 (2 processes, torchrun/gloo) and
    B = 3 (per-device 2, accumulation 3): each run sees the order rebuilt for its own B, groups whole."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    ds = _curated_set()
    stored = [ds["id"][i] for i in np.argsort(ds["curriculum_rank"])]
    # 1 process, 4 completions per step, G=2: B = 2; 3 steps
    one = _train_with_setup(tiny_model_dir, tmp_path / "one", ds, 3)
    assert one == _intended_ids(ds, 2)[:6]
    # 1 process, per-device 2 x accumulation 3: one generation of B = 3 prompts per optimizer step; 2 steps
    accum = _train_with_setup(tiny_model_dir, tmp_path / "accum", ds, 2, per_device_train_batch_size=2,
                              gradient_accumulation_steps=3)
    assert accum == _intended_ids(ds, 3)[:6]
    # 2 processes x per-device 4, G=2: B = 4, each process gets 2 whole groups of every round; 2 steps
    root = Path(__file__).resolve().parents[1]
    script = tmp_path / "geometry.py"
    script.write_text(_GEOMETRY_SCRIPT)
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    port = str(29500 + (os.getpid() + 7) % 1000)
    proc = subprocess.run(
        [torchrun, "--nproc_per_node", "2", "--master_port", port, str(script), tiny_model_dir, str(tmp_path), str(root)],
        cwd=root, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    p0, p1 = (json.loads((tmp_path / f"ids{r}.json").read_text()) for r in (0, 1))
    intended = _intended_ids(ds, 4)
    rounds = [p0[2 * k : 2 * k + 2] + p1[2 * k : 2 * k + 2] for k in range(2)]  # process 0 holds each round's head
    assert [x for r in rounds for x in r] == intended[:8]
    for seen in (one, accum, rounds[0] + rounds[1]):
        assert seen != stored[: len(seen)]  # the order built for 5 would have been a different sequence


def test_trainer_used_directly_rebuilds_a_misaligned_order(tiny_model_dir, data_dir, tmp_path):
    """CurriculumGRPOTrainer without grpo.main: an order curated for 5 prompts per batch is rebuilt for B = 2."""
    ds = _curated_set()
    rec = GroupRecorder(2)
    trainer = CurriculumGRPOTrainer(model=tiny_model_dir, reward_funcs=rec, args=_config(tmp_path, 1),
                                    train_dataset=ds, sampler="curriculum")
    rebuilt = trainer.train_dataset
    assert [rebuilt["id"][i] for i in np.argsort(rebuilt["curriculum_rank"])] == _intended_ids(ds, 2)
    assert [ds["id"][i] for i in trainer._get_train_sampler().epoch_chunks()[0]] == _intended_ids(ds, 2)[:2]
