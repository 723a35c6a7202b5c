"""SAERL ordering: curricula, determinism, cluster-first batches, mixing share, alignment, quality filter."""

from __future__ import annotations

import numpy as np
import pytest
from datasets import Dataset

from saerl_hf.curriculum import (
    CurriculumError,
    add_curriculum_rank,
    batch_stats,
    curriculum_order,
    sort_by_curriculum,
    validate_alignment,
)


def _signals(n=203, k=5, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, k, n), rng.random(n)


@pytest.mark.parametrize("curriculum", ["random", "difficulty", "cluster", "saerl"])
@pytest.mark.parametrize("mixing", [0.0, 0.25, 1.0])
def test_every_curriculum_is_a_seeded_permutation(curriculum, mixing):
    c, d = _signals()
    d = np.floor(d * 5)  # integer levels: ties are broken by the seed
    a = curriculum_order(len(c), 8, curriculum, c, d, mixing, seed=1)
    assert np.array_equal(np.sort(a), np.arange(len(c)))
    assert np.array_equal(a, curriculum_order(len(c), 8, curriculum, c, d, mixing, seed=1))
    assert not np.array_equal(a, curriculum_order(len(c), 8, curriculum, c, d, mixing, seed=2))


def test_difficulty_curriculum_is_global_easy_to_hard():
    c, d = _signals()
    order = curriculum_order(len(c), 8, "difficulty", c, d)
    assert np.all(np.diff(d[order]) >= 0)


def test_saerl_without_mixing_gives_cluster_pure_batches_easy_to_hard_inside_each_cluster():
    c, d = _signals(n=4 * 48, k=4)  # may leave remainders: those form a few mixed batches
    b = 8
    order = curriculum_order(len(c), b, "saerl", c, d, curriculum_mixing=0.0, seed=3)
    batches = order[: len(order) // b * b].reshape(-1, b)
    pure = [len(set(c[row])) == 1 for row in batches]
    sizes = np.bincount(c)
    assert sum(pure) == int((sizes // b).sum())  # every full chunk of a cluster is one pure batch
    for k in range(4):  # a cluster's prompts appear in non-decreasing difficulty along the order
        seq = d[order][c[order] == k][: (sizes[k] // b) * b]
        assert np.all(np.diff(seq) >= 0)
    # batches are interleaved across clusters, not one cluster after another
    majority = np.array([np.bincount(c[row]).argmax() for row in batches])
    assert np.mean(majority[1:] != majority[:-1]) > 0.5
    # cluster curriculum: same batch structure, no curriculum inside clusters
    cl = curriculum_order(len(c), b, "cluster", c, d, curriculum_mixing=0.0, seed=3)
    assert batch_stats(cl, b, c, d)["mean_purity"] == batch_stats(order, b, c, d)["mean_purity"]
    assert batch_stats(order, b, c, d)["difficulty_trend"] > 0.8 > batch_stats(cl, b, c, d)["difficulty_trend"]


@pytest.mark.parametrize("mixing", [0.25, 0.5, 1.0])
def test_tail_swap_moves_the_configured_share_between_neighbours_only(mixing):
    b, k_clusters, per = 8, 4, 64
    c = np.repeat(np.arange(k_clusters), per)  # sizes are multiples of b: all batches start pure
    d = np.random.default_rng(0).random(c.size)
    pure = curriculum_order(c.size, b, "saerl", c, d, curriculum_mixing=0.0, seed=5)
    mixed = curriculum_order(c.size, b, "saerl", c, d, curriculum_mixing=mixing, seed=5)
    pb, mb = pure.reshape(-1, b), mixed.reshape(-1, b)
    k = int(round(mixing * b))
    for i in range(1, len(pb) - 1):  # inner batches exchange exactly k prompts, all from batches i-1 / i+1
        moved_in = set(mb[i]) - set(pb[i])
        assert len(moved_in) == k
        assert moved_in <= set(pb[i - 1]) | set(pb[i + 1])
    assert len(set(mb[0]) - set(pb[0])) == (k + 1) // 2


@pytest.mark.parametrize("b,mixing", [(2, 0.25), (3, 0.25), (5, 0.5)])
def test_tail_swap_share_holds_on_average_for_small_batches(b, mixing):
    c = np.repeat(np.arange(4), 60 * b)  # every batch starts pure
    d = np.random.default_rng(1).random(c.size)
    pure = curriculum_order(c.size, b, "saerl", c, d, curriculum_mixing=0.0, seed=2).reshape(-1, b)
    mixed = curriculum_order(c.size, b, "saerl", c, d, curriculum_mixing=mixing, seed=2).reshape(-1, b)
    moved = np.mean([len(set(m) - set(p)) / b for p, m in zip(pure[1:-1], mixed[1:-1])])
    assert abs(moved - mixing) < 0.02
    for i in range(1, len(pure) - 1):
        assert set(mixed[i]) <= set(pure[i - 1]) | set(pure[i]) | set(pure[i + 1])


def test_remainders_and_tail_are_reported():
    c, d = _signals(n=203, k=5)
    order = curriculum_order(203, 8, "saerl", c, d)
    assert order.size == 203
    report = validate_alignment(203, 8)
    assert (report.num_batches, report.dropped_tail) == (25, 3)
    assert "3 tail prompts" in report.message()


def test_add_rank_sort_and_alignment_on_a_dataset():
    c, d = _signals(n=100, k=3)
    ds = Dataset.from_dict({"id": [f"p{i}" for i in range(100)], "cluster": c, "difficulty": d})
    ranked = add_curriculum_rank(ds, 10, curriculum="saerl", seed=0)
    rank = np.array(ranked["curriculum_rank"])
    assert np.array_equal(np.sort(rank), np.arange(100))
    assert np.array_equal(np.array(ranked["curriculum_batch"]), rank // 10)
    ordered = sort_by_curriculum(ranked)
    assert ordered["curriculum_rank"] == list(range(100))
    ok = validate_alignment(ordered, 10)
    assert ok.aligned and ok.sorted_by_rank and ok.dropped_tail == 0
    bad = validate_alignment(ordered, 8)
    assert not bad.aligned and "built for 10" in bad.message() and "dropped" in bad.message()
    with pytest.raises(CurriculumError, match="prompts_per_batch=8"):
        validate_alignment(ordered, 8, strict=True)
    assert validate_alignment(ranked, 10).sorted_by_rank is False
    # re-ranking replaces the columns instead of failing on duplicates
    again = add_curriculum_rank(ranked, 5, curriculum="difficulty")
    assert np.all(np.diff(np.array(d)[np.argsort(again["curriculum_rank"])]) >= 0)


def test_errors_name_the_field_and_the_fix():
    c, d = _signals(n=20)
    d = d.copy()
    d[7] = np.nan
    with pytest.raises(CurriculumError, match="row 7"):
        curriculum_order(20, 4, "saerl", c, d)
    with pytest.raises(CurriculumError, match="needs a 'cluster' column"):
        curriculum_order(20, 4, "cluster", None, None)
    with pytest.raises(CurriculumError, match="curriculum_mixing must be in"):
        curriculum_order(20, 4, "saerl", c, np.zeros(20), curriculum_mixing=1.5)
    with pytest.raises(CurriculumError, match="unknown curriculum"):
        curriculum_order(20, 4, "easy")
    with pytest.raises(CurriculumError, match="nothing would be trained"):
        validate_alignment(3, 4)
    with pytest.raises(CurriculumError, match="add_curriculum_rank"):
        sort_by_curriculum(Dataset.from_dict({"x": [1, 2]}))


def test_string_cluster_labels_work():
    labels = np.array(["algebra", "geometry", "algebra", "number"] * 8)
    order = curriculum_order(32, 4, "cluster", labels, None, curriculum_mixing=0.0)
    assert all(len(set(labels[row])) == 1 for row in order.reshape(-1, 4))


def test_keep_by_quality_threshold_and_top_fraction():
    from saerl_hf.signals.quality import keep_by_quality

    q = [0.9, 0.1, 0.5, None, 0.5, 0.7]
    ds = Dataset.from_dict({"id": list("abcdef"), "quality": q})
    kept, counts = keep_by_quality(ds, threshold=0.5)
    assert kept["id"] == ["a", "c", "e", "f"]
    assert counts == {"n_in": 6, "n_kept": 4, "n_dropped": 1, "n_missing": 1, "threshold": 0.5}
    kept, counts = keep_by_quality(ds, top_fraction=0.6)  # 3 of 5 scored rows, tie at 0.5 -> earliest wins
    assert kept["id"] == ["a", "c", "f"] and counts["n_kept"] == 3 and counts["threshold"] == 0.5
    same, counts = keep_by_quality(ds)
    assert len(same) == 6 and counts["n_kept"] == 6
    with pytest.raises(ValueError, match="either threshold= .* not both"):
        keep_by_quality(ds, threshold=0.1, top_fraction=0.5)
    with pytest.raises(ValueError, match="No 'score' column.*Fix"):
        keep_by_quality(ds, threshold=0.1, column="score")


# ----------------------------------------------------------------------------- batch geometry


def _curated(n=60, b=5, curriculum="saerl", seed=3):
    """A dataset as curate stores it: ranked for ``b`` prompts per batch, rows sorted by rank."""
    c, d = _signals(n=n, k=3, seed=seed)
    ds = Dataset.from_dict({"id": [f"p{i}" for i in range(n)], "cluster": c, "difficulty": d})
    return sort_by_curriculum(add_curriculum_rank(ds, b, curriculum=curriculum, seed=seed))


def _ids_in_rank_order(ds):
    return [ds["id"][i] for i in np.argsort(ds["curriculum_rank"])]


def test_order_recipe_travels_with_the_dataset():
    from saerl_hf.curriculum import order_spec

    ds = _curated()
    assert order_spec(ds) == {"curriculum": "saerl", "curriculum_mixing": 0.25, "seed": 3, "prompts_per_batch": 5,
                              "cluster_column": "cluster", "difficulty_column": "difficulty"}
    reloaded = ds.map(lambda r: {"x": 1}).filter(lambda r: True)  # GRPO's prepare_prompts / quality filter
    assert order_spec(reloaded) == order_spec(ds)


@pytest.mark.parametrize("b", [2, 3, 4, 8])
def test_fit_to_geometry_rebuilds_the_same_recipe_for_another_batch_size(b, caplog):
    from saerl_hf.curriculum import fit_to_geometry

    ds = _curated(b=5)
    assert fit_to_geometry(ds, 5) is ds  # built for this geometry: untouched
    with caplog.at_level("INFO", logger="saerl_hf.curriculum"):
        fitted = fit_to_geometry(ds, b)
    assert "built for 5 unique prompts per generation batch, this run has " + str(b) in caplog.text
    c, d = np.array(ds["cluster"]), np.array(ds["difficulty"])
    intended = curriculum_order(len(ds), b, "saerl", c, d, curriculum_mixing=0.25, seed=3)
    assert _ids_in_rank_order(fitted) == [ds["id"][i] for i in intended]
    assert _ids_in_rank_order(fitted) != _ids_in_rank_order(ds)
    report = validate_alignment(fitted, b, zero_patch=False)
    assert report.aligned and report.built_for == b
    assert fit_to_geometry(fitted, b) is fitted


def test_fit_to_geometry_reorders_a_filtered_subset_and_keeps_an_unrecorded_order(caplog):
    from saerl_hf.curriculum import fit_to_geometry

    ds = _curated(b=4)
    subset = ds.filter(lambda r: r["difficulty"] > 0.2)  # e.g. a quality filter at train time
    fitted = fit_to_geometry(subset, 4)
    c, d = np.array(subset["cluster"]), np.array(subset["difficulty"])
    assert _ids_in_rank_order(fitted) == [subset["id"][i] for i in curriculum_order(len(subset), 4, "saerl", c, d,
                                                                                    seed=3)]
    bare = subset.map(lambda r: r)
    bare.info.description = ""  # an older revision: no recipe stored
    with caplog.at_level("WARNING", logger="saerl_hf.curriculum"):
        kept = fit_to_geometry(bare, 2)
    assert "cannot be rebuilt" in caplog.text
    assert kept["curriculum_rank"] == list(range(len(bare)))  # the stored sequence, numbered 0..n-1
    assert _ids_in_rank_order(kept) == _ids_in_rank_order(subset)


def test_paper_recipes_curate_for_the_batch_the_grpo_recipe_trains():
    """recipes/qwen2.5-math-1.5b: curate's prompts_per_batch is the GRPO recipe's B on its accelerate config."""
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[1] / "recipes"
    curate = yaml.safe_load((root / "qwen2.5-math-1.5b" / "curate" / "deepmath.yaml").read_text())
    processes = yaml.safe_load((root / "accelerate_configs" / "zero2.yaml").read_text())["num_processes"]
    for name in ("config_saerl.yaml", "config_vanilla.yaml"):
        grpo = yaml.safe_load((root / "qwen2.5-math-1.5b" / "grpo" / name).read_text())
        steps = grpo.get("steps_per_generation") or grpo["gradient_accumulation_steps"]
        b = grpo["per_device_train_batch_size"] * processes * steps // grpo["num_generations"]
        assert curate["prompts_per_batch"] == b == 64, name


_LOAD_AND_FIT = """
import json, sys
from saerl_hf.curriculum import fit_to_geometry, order_spec
from saerl_hf.hub import load_curated
ds = load_curated(sys.argv[1], revision=sys.argv[2]).dataset
fitted = fit_to_geometry(ds, int(sys.argv[3]))
rank = fitted["curriculum_rank"]
print("RESULT " + json.dumps({"spec": order_spec(ds), "ids": [fitted["id"][i] for i in sorted(range(len(rank)),
                                                                                         key=rank.__getitem__)]}))
"""


def test_a_published_revision_carries_its_order_recipe_to_any_geometry(hub, hub_run, data_dir, tmp_path):
    """Curated for 5 prompts per batch, pushed to the (emulated) Hub, loaded back and fitted to B = 2 elsewhere."""
    import json
    import shutil

    from datasets import load_from_disk

    from tests.hub_plugin import build_curated_dir

    root = build_curated_dir(tmp_path / "curated", limit=40)
    ds = load_from_disk(str(root / "dataset"))
    ranked = sort_by_curriculum(add_curriculum_rank(ds.remove_columns("curriculum_rank"), 5, curriculum="saerl", seed=4))
    ranked.save_to_disk(str(tmp_path / "ranked"))
    shutil.rmtree(root / "dataset")
    shutil.copytree(tmp_path / "ranked", root / "dataset")
    hub_run("push", str(root), "--repo-id", "saerl/geometry", "--hub_revision", "v1", "--retry-base-wait", "0.01")
    proc = hub_run("saerl/geometry", "v1", "2", code=_LOAD_AND_FIT)
    got = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1].removeprefix("RESULT "))
    assert got["spec"]["curriculum"] == "saerl" and got["spec"]["prompts_per_batch"] == 5 and got["spec"]["seed"] == 4
    order = curriculum_order(len(ranked), 2, "saerl", np.array(ranked["cluster"]), np.array(ranked["difficulty"]),
                             curriculum_mixing=0.25, seed=4)
    assert got["ids"] == [ranked["id"][i] for i in order]
