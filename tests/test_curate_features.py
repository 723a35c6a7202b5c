"""`saerl-hf curate` with `features: sae+dense`: the pool is featurized with the dense block and every probe fits
on the hybrid (tiny reader + SAE, real data)."""

from __future__ import annotations

import json

from datasets import load_from_disk

from saerl_hf.cards import render_card
from saerl_hf.curate import CurateConfig, run_curate


def test_curate_fits_every_probe_on_the_chosen_feature_set(tiny_model_dir, tiny_sae_dir, tmp_path):
    config = CurateConfig(output_dir=str(tmp_path / "run"), sources=["mawps_singleop", "gsm8k:test"],
                          limit_per_source=50, model=tiny_model_dir, sae=tiny_sae_dir, top_k=16, features="sae+dense",
                          featurize_batch_size=8, chunk_size=50, source_levels=["mawps_singleop=0.5", "gsm8k=1.5"],
                          quality_train_size=50, n_clusters=3, prompts_per_batch=4)
    run_curate(config, command="pytest")
    for kind in ("difficulty", "quality", "clusters"):
        saved = json.loads((tmp_path / "run" / "probes" / kind / "config.json").read_text())
        assert saved["config"]["features"] == "sae+dense" and saved["identity"]["features"] == "sae+dense", kind
        # the SAE block and the dense block; difficulty and clusters read the mean part of the mean+last pooling
        assert saved["feature_width"] == (256 if kind == "quality" else 128) + 64, kind
        assert saved["identity"].get("pooling_part") == (None if kind == "quality" else "mean"), kind
    curated = load_from_disk(str(tmp_path / "run" / "dataset"))
    assert {"difficulty", "quality", "cluster", "dense_mean"} <= set(curated.column_names)
    # summary.json keeps the probes' explanations, so the card a push renders from it shows them
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert [e["signal"] for e in summary["explanations"]] == ["difficulty", "quality"]
    assert all(e["features"] == "sae+dense" and e["latents"] for e in summary["explanations"])
    assert all(latent["examples"] and latent["label"] for e in summary["explanations"] for latent in e["latents"])
    record = {"dataset_sha256": "0" * 64, "splits": {"train": len(curated)}, "artefacts": {},
              "push_command": "saerl-hf push", "versions": {}}
    card = render_card("", "me/data", "v1", {"sae": "s"}, summary, record, [("id", "string")])
    assert "## What the probes look at" in card and "### quality (higher = cleaner; sae+dense features)" in card
