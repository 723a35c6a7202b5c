"""One name per concept (issue 17; docs/architecture.md, "Names"): every old spelling still works for one release.

Each old spelling goes through the real parser of its command (a YAML recipe and a flag), warns with a
``FutureWarning`` and a logged line that name the new key, and its value lands on the new field. Every recipe
under recipes/ parses without one. Old saved files (stored order recipes, cluster models, run summaries, SAE
training records, curate summaries and stage configs) read under the new names.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml
from datasets import Dataset
from trl import TrlParser

from saerl_hf.configs import RENAMED_OPTIONS, ConfigError, parse_config

ROOT = Path(__file__).resolve().parents[1]
DEPRECATED = "will be removed in the next release; use"

CONFIGS = {  # config class -> (module, prog)
    "CurateConfig": ("saerl_hf.curate", "saerl-hf curate"),
    "FeaturizeConfig": ("saerl_hf.featurize_config", "saerl-hf featurize"),
    "ReportSignalsConfig": ("saerl_hf.signals.report", "saerl-hf report-signals"),
    "DemoConfig": ("saerl_hf.demo", "saerl-hf demo"),
    "PushConfig": ("saerl_hf.hub_push", "saerl-hf push"),
}
# (config class, old key, old value in YAML / on the command line, new field, the value it must land as)
OLD_SPELLINGS = [
    ("CurateConfig", "sae_width", "2048", "d_sae", 2048),
    ("CurateConfig", "order", "difficulty", "curriculum", "difficulty"),
    ("CurateConfig", "mixing", "0.5", "curriculum_mixing", 0.5),
    ("FeaturizeConfig", "sae_width", "2048", "d_sae", 2048),
    ("ReportSignalsConfig", "sae_width", "2048", "d_sae", 2048),
    ("ReportSignalsConfig", "clusters_k", "5", "n_clusters", 5),
    ("DemoConfig", "sae_width", "128", "d_sae", 128),
    ("PushConfig", "revision", "v2", "hub_revision", "v2"),  # the write revision, as curate / GRPO (TRL) name it
]


def _parse(name: str, argv: list[str]):
    module, prog = CONFIGS[name]
    (config,) = parse_config(TrlParser((getattr(importlib.import_module(module), name),), prog=prog), argv)
    return config


def _argv(where: str, key: str, value: str, tmp_path: Path) -> list[str]:
    if where == "flag":
        return [f"--{key}", value]
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"{key}: {value}\n")
    return ["--config", str(recipe)]


def _ours(shown) -> list[str]:
    return [str(w.message) for w in shown if issubclass(w.category, FutureWarning) and DEPRECATED in str(w.message)]


def test_every_old_spelling_is_tested():
    tested = {(name, old) for name, old, *_ in OLD_SPELLINGS} | {("CurateConfig", "push_to_hub")}
    assert tested == {(name, old) for name, table in RENAMED_OPTIONS.items() for old in table}


@pytest.mark.parametrize("where", ["yaml", "flag"])
@pytest.mark.parametrize("name,old,value,new,expected", OLD_SPELLINGS,
                         ids=[f"{name}.{old}" for name, old, *_ in OLD_SPELLINGS])
def test_an_old_spelling_warns_with_the_new_key_and_lands_on_the_new_field(name, old, value, new, expected, where,
                                                                           tmp_path, caplog):
    with pytest.warns(FutureWarning, match=rf"'(--)?{old}' is deprecated .* use '(--)?{new}' instead"):
        config = _parse(name, _argv(where, old, value, tmp_path))
    assert getattr(config, new) == expected
    assert not hasattr(config, old)
    logged = [r.getMessage() for r in caplog.records if r.name == "saerl_hf.configs"]
    assert any(f"'{new}'" in m or f"'--{new}'" in m for m in logged), logged


@pytest.mark.parametrize("where", ["yaml", "flag"])
def test_curate_push_to_hub_with_a_repo_id_is_push_to_hub_true_plus_hub_dataset_id(where, tmp_path, caplog):
    with pytest.warns(FutureWarning, match="push_to_hub.*me/math-saerl.* is deprecated .*hub_dataset_id"):
        config = _parse("CurateConfig", _argv(where, "push_to_hub", "me/math-saerl", tmp_path))
    assert config.push_to_hub is True and config.hub_dataset_id == "me/math-saerl"
    assert any("hub_dataset_id" in r.getMessage() for r in caplog.records if r.name == "saerl_hf.configs")
    with warnings.catch_warnings(record=True) as shown:  # a bool is today's spelling: no warning
        warnings.simplefilter("always")
        config = _parse("CurateConfig", _argv(where, "push_to_hub", "false", tmp_path))
    assert config.push_to_hub is False and not _ours(shown)
    from saerl_hf.curate import CurateConfig

    with pytest.warns(FutureWarning, match="hub_dataset_id"):  # from Python too
        config = CurateConfig(push_to_hub="me/x")
    assert config.push_to_hub is True and config.hub_dataset_id == "me/x"


def test_push_writes_to_hub_revision_and_the_cli_reads_it(monkeypatch):
    """`saerl-hf push --hub_revision` (or --hub-revision) is PushConfig.hub_revision, the branch push_curated gets;
    the old --revision reaches it through RENAMED_OPTIONS (tested above with every other old spelling)."""
    from saerl_hf import hub
    from saerl_hf.hub_push import PushConfig

    assert "hub_revision" in {f.name for f in dataclasses.fields(PushConfig)}
    assert "revision" not in {f.name for f in dataclasses.fields(PushConfig)}
    base = ["--curated_dir", "out/curated", "--repo_id", "me/math-saerl"]
    for flag in ("--hub_revision", "--hub-revision"):
        with warnings.catch_warnings(record=True) as shown:
            warnings.simplefilter("always")
            config = _parse("PushConfig", [*base, flag, "v1"])
        assert config.hub_revision == "v1" and not _ours(shown)
    seen = {}

    def fake_push(curated_dir, repo_id, revision, *args, **kwargs):
        seen["revision"] = revision
        raise hub.HubPushError("stop here")

    monkeypatch.setattr(hub, "push_curated", fake_push)
    assert hub.cli_main(["out/curated", "--repo-id", "me/math-saerl", "--hub-revision", "v3"]) == 1
    assert seen == {"revision": "v3"}
    with pytest.warns(FutureWarning, match="'--revision' is deprecated .* use '--hub_revision' instead"):
        assert hub.cli_main(["out/curated", "--repo-id", "me/math-saerl", "--revision", "v4"]) == 1
    assert seen == {"revision": "v4"}


def test_the_shim_works_for_grpos_trl_parser(monkeypatch, tmp_path):
    """GRPO's TrlParser (three dataclasses, TRL's GRPOConfig among them) goes through the same rewrite."""
    from saerl_hf.grpo import parse_args

    monkeypatch.setitem(RENAMED_OPTIONS, "GRPOScriptArguments", {"mixing": "curriculum_mixing"})
    recipe = tmp_path / "grpo.yaml"
    recipe.write_text("mixing: 0.5\nuse_cpu: true\nbf16: false\noutput_dir: out\n")
    with pytest.warns(FutureWarning, match="use 'curriculum_mixing'"):
        script_args, training_args, _ = parse_args(["--config", str(recipe), "--max_steps", "3"])
    assert script_args.curriculum_mixing == 0.5 and training_args.max_steps == 3
    with pytest.warns(FutureWarning, match="use '--curriculum_mixing'"):
        script_args, _, _ = parse_args(["--config", str(recipe), "--mixing", "0.1"])
    assert script_args.curriculum_mixing == 0.1  # the flag overrides the recipe, as any flag does


def test_old_and_new_spelling_together_is_a_conflict(tmp_path):
    recipe = tmp_path / "both.yaml"
    recipe.write_text("order: random\ncurriculum: saerl\n")
    with pytest.raises(ConfigError, match=r"both 'order' \(deprecated\) and 'curriculum' are set\. Fix: keep only"):
        _parse("CurateConfig", ["--config", str(recipe)])
    with pytest.raises(ConfigError, match=r"both '--mixing' \(deprecated\) and '--curriculum_mixing'"):
        _parse("CurateConfig", ["--mixing", "0.5", "--curriculum_mixing", "0.1"])


# ----------------------------------------------------------------------------- recipes


def _recipe_parsers():
    from saerl_hf.calibrate import CalibrateConfig
    from saerl_hf.curate import CurateConfig
    from saerl_hf.experiment import ExperimentConfig
    from saerl_hf.grpo import parse_args
    from saerl_hf.sae_sweep import SAESweepConfig
    from saerl_hf.sae_train import TrainSAEConfig
    from saerl_hf.warmstart import WarmStartConfig

    def single(cls):
        return lambda argv: parse_config(TrlParser((cls,)), argv)

    cpu = ["--bf16", "false", "--use_cpu", "true", "--use_vllm", "false"]  # the GPU recipes parse on a CPU too
    return {"curate": single(CurateConfig), "grpo": lambda argv: parse_args([*argv, *cpu]),
            "warmstart": single(WarmStartConfig), "calibrate": single(CalibrateConfig),
            "experiment": single(ExperimentConfig),
            # recipes/<model>/sae/: sweep*.yaml are `sae-sweep` configs, the others `train-sae` ones (default.yaml)
            "sae": lambda argv: (single(SAESweepConfig) if Path(argv[1]).name.startswith("sweep")
                                 else single(TrainSAEConfig))(argv)}


RECIPES = sorted(p for p in (ROOT / "recipes").rglob("*.y*ml") if p.parent.name != "accelerate_configs")


def test_every_recipe_kind_is_covered():
    assert {p.parent.name for p in RECIPES} == set(_recipe_parsers())


@pytest.mark.parametrize("recipe", RECIPES, ids=[str(p.relative_to(ROOT / "recipes")) for p in RECIPES])
def test_every_recipe_parses_without_a_deprecation(recipe, caplog):
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        parsed = _recipe_parsers()[recipe.parent.name](["--config", str(recipe)])
    assert not _ours(shown)
    assert not [r for r in caplog.records if r.name == "saerl_hf.configs"]
    overrides = [o for c in parsed if hasattr(c, "grpo_overrides") for o in c.grpo_overrides + c.curate_overrides]
    old = {key for table in RENAMED_OPTIONS.values() for key, new in table.items() if isinstance(new, str)}
    assert not [o for o in overrides if o.lstrip("-").partition("=")[0] in old]
    assert not {"sae_width", "order", "mixing", "clusters_k"} & set(yaml.safe_load(recipe.read_text()))


# ----------------------------------------------------------------------------- Python API and saved files


def _ranked_args():
    from saerl_hf.curriculum import add_curriculum_rank

    rng = np.random.default_rng(0)
    ds = Dataset.from_dict({"cluster": rng.integers(0, 3, 40), "difficulty": rng.random(40)})
    return ds, add_curriculum_rank


def test_old_python_keywords_warn_and_give_the_same_order():
    from saerl_hf.curriculum import curriculum_order, prompts_per_batch_of, unique_prompts_per_batch

    ds, add_curriculum_rank = _ranked_args()
    new = add_curriculum_rank(ds, 4, curriculum="cluster", curriculum_mixing=0.5, seed=1)
    with pytest.warns(FutureWarning, match=r"use 'curriculum='") as shown:
        old = add_curriculum_rank(ds, unique_prompts_per_batch=4, mode="cluster", mixing=0.5, seed=1)
    assert {m for m in map(str, (w.message for w in shown)) if "curriculum_mixing=" in m}
    assert old["curriculum_rank"] == new["curriculum_rank"]
    with pytest.warns(FutureWarning, match="use 'curriculum='"):
        curriculum_order(40, 4, mode="random")
    with pytest.raises(TypeError, match="both 'mode' .* and 'curriculum'"):
        curriculum_order(40, 4, mode="random", curriculum="random")
    args = type("Args", (), {"generation_batch_size": 16, "num_generations": 4})()
    with pytest.warns(FutureWarning, match=r"use 'prompts_per_batch_of\(\)'"):
        assert unique_prompts_per_batch(args) == prompts_per_batch_of(args) == 4


def test_an_order_recipe_stored_under_the_old_keys_still_rebuilds():
    from saerl_hf.curriculum import SPEC_KEY, fit_to_geometry, order_spec, sort_by_curriculum
    from saerl_hf.sparse import write_provenance

    ds, add_curriculum_rank = _ranked_args()
    ranked = sort_by_curriculum(add_curriculum_rank(ds, 5, curriculum="saerl", seed=3))
    today = fit_to_geometry(ranked, 4)  # rebuilt for 4 prompts per batch from the stored recipe
    old = {"mode": "saerl", "mixing": 0.25, "seed": 3, "unique_prompts_per_batch": 5, "cluster_column": "cluster",
           "difficulty_column": "difficulty"}
    write_provenance(ranked, old, key=SPEC_KEY)
    assert order_spec(ranked) == {"curriculum": "saerl", "curriculum_mixing": 0.25, "seed": 3, "prompts_per_batch": 5,
                                  "cluster_column": "cluster", "difficulty_column": "difficulty"}
    assert fit_to_geometry(ranked, 4)["curriculum_rank"] == today["curriculum_rank"] != ranked["curriculum_rank"]


def test_a_cluster_model_saved_with_k_loads_as_n_clusters(tmp_path):
    from saerl_hf.signals import ClusterConfig, ClusterModel
    from tests.test_signals_unit import cluster_set, featurized

    idx, val, _ = cluster_set(20, 3, seed=0)
    data = featurized(idx, val)
    model = ClusterModel(ClusterConfig(n_clusters=3)).fit(data)
    model.save(tmp_path / "clusters")
    saved = json.loads((tmp_path / "clusters" / "config.json").read_text())
    saved["config"]["k"] = saved["config"].pop("n_clusters")
    (tmp_path / "clusters" / "config.json").write_text(json.dumps(saved))
    loaded = ClusterModel.load(tmp_path / "clusters")
    assert loaded.config.n_clusters == 3 and np.array_equal(loaded.predict(data), model.predict(data))


def test_run_summaries_and_sae_records_are_read_under_their_old_name(tmp_path):
    from saerl_hf.experiment_stats import collect
    from saerl_hf.grpo_card import OLD_SUMMARY_FILE, SUMMARY_FILE, finished_runs, summary_file
    from saerl_hf.sae_load import OLD_TRAINING_FILE, TRAINING_FILE, sae_training_info

    assert (SUMMARY_FILE, TRAINING_FILE, OLD_SUMMARY_FILE) == ("grpo_summary.json", "sae_training.json",
                                                                "saerl_training.json")
    old, new = tmp_path / "runs" / "vanilla" / "seed0", tmp_path / "runs" / "saerl" / "seed0"
    for run, name in ((old, OLD_SUMMARY_FILE), (new, SUMMARY_FILE)):
        run.mkdir(parents=True)
        (run / name).write_text(json.dumps({"heldout_curve": [{"step": 5, "heldout/x/accuracy": 0.5}]}))
    (tmp_path / "runs" / "difficulty" / "seed0").mkdir(parents=True)  # unfinished: no summary
    assert finished_runs(tmp_path) == [new, old] and summary_file(old).name == OLD_SUMMARY_FILE
    assert {arm: runs[0]["curve"] for arm, runs in collect(tmp_path).items()} == {"saerl": [(5, 0.5)],
                                                                                  "vanilla": [(5, 0.5)]}
    (tmp_path / "sae").mkdir()
    (tmp_path / "sae" / OLD_TRAINING_FILE).write_text(json.dumps({"metrics": {"l0": 32}}))
    assert sae_training_info(tmp_path / "sae") == {"metrics": {"l0": 32}} and sae_training_info(None) == {}


def test_an_older_curate_summary_and_stage_config_read_under_the_new_names(tmp_path):
    from saerl_hf.cards import card_curriculum
    from saerl_hf.curate import CurateConfig, _check_config_unchanged

    old_summary = {"order": {"mode": "saerl", "mixing": 0.25, "prompts_per_batch": 8, "seed": 0}}
    assert card_curriculum(old_summary) == {"curriculum": "saerl", "curriculum_mixing": 0.25, "prompts_per_batch": 8,
                                            "seed": 0}
    config = CurateConfig(output_dir=str(tmp_path), curriculum="difficulty", curriculum_mixing=0.5, d_sae=2048)
    renamed = {"d_sae": "sae_width", "curriculum": "order", "curriculum_mixing": "mixing"}
    stage = {renamed.get(k, k): v for k, v in dataclasses.asdict(config).items()
             if k not in ("push_to_hub", "hub_dataset_id", "hub_revision", "create_pr")}
    (tmp_path / "stages").mkdir()
    (tmp_path / "stages" / "config.json").write_text(json.dumps(stage))
    _check_config_unchanged(tmp_path, config)  # a run made before the rename resumes
