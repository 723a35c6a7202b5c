"""Card templates (package data under ``saerl_hf/templates/``) and the curated dataset's card.

The three cards (dataset, SAE, GRPO model) are huggingface_hub card templates shipped inside the package, so a
wheel install writes them too; ``model_cards/`` at the repository root links to the same files.
:func:`card_template` is the one place that finds them, :func:`render_card_template` the one that fills them (through
the shared Jinja environment of every page, ``saerl_hf.templating``).
"""

from __future__ import annotations

from pathlib import Path

from saerl_hf.templating import TEMPLATE_DIR

CARD_TEMPLATES = ("dataset_card.md", "model_card.md", "sae_card.md")

COLUMN_DOCS = {
    "id": "stable row id `<source>/<original id>`",
    "problem": "the problem statement",
    "answer": "gold final answer (string)",
    "solution": "reference solution when the source has one",
    "source": "source dataset name",
    "subject": "subject / subset when the source has one",
    "level": "source difficulty level when the source has one",
    "sae_idx": "indices of the top-k active SAE latents (pooled over the prompt)",
    "sae_val": "activations of those latents, aligned with `sae_idx`",
    "sae_l0": "number of active latents before top-k truncation",
    "difficulty": "predicted difficulty from the SAE difficulty probe (higher = harder)",
    "quality": "predicted quality score from the SAE quality probe",
    "cluster": "cluster id from SAE-feature clustering",
    "curriculum_rank": "position in the SAERL curriculum order (0 = first)",
}
# The curate settings that decide which rows are kept and in what order (shown on the dataset card).
CURATION_SETTINGS = ("limit_per_source", "holdout_per_source", "inject_noise", "seed", "max_length", "reader_dtype",
                     "difficulty_label", "quality_threshold", "quality_keep_fraction", "n_clusters", "dedup",
                     "dedup_threshold", "curriculum", "curriculum_mixing", "prompts_per_batch")


class CardTemplateError(FileNotFoundError):
    """A card template is missing from the installed package."""


def card_template(name: str) -> Path:
    """The path of the card template ``name`` (one of :data:`CARD_TEMPLATES`)."""
    if name not in CARD_TEMPLATES:
        raise CardTemplateError(f"Unknown card template '{name}'; known: {', '.join(CARD_TEMPLATES)}.")
    path = TEMPLATE_DIR / name
    if not path.is_file():
        raise CardTemplateError(
            f"Card template {path} is missing from the installed saerl-hf (it ships as package data). Fix: reinstall "
            f"it (`pip install --force-reinstall saerl-hf`, or `pip install -e .` in a checkout).")
    return path


def render_card_template(card_class, name: str, card_data, **values):
    """A huggingface_hub card (``card_class``: DatasetCard or ModelCard) from the template ``name`` through the shared
    environment (saerl_hf.templating), filled as ``card_class.from_template`` fills it: ``card_data`` as the YAML
    header, its fields and ``values`` as the template's variables."""
    from saerl_hf.templating import environment

    card_template(name)  # a missing template is a CardTemplateError that names the fix
    text = environment().get_template(name).render(card_data=card_data.to_yaml(), **{**card_data.to_dict(), **values})
    return card_class(text)


def card_sources(summary: dict) -> list[dict]:
    """One row per curated source: Hub id (curate writes ``hub_id``), split, rows kept in this revision and rows
    in the pool before filtering (from ``counts``), license."""
    counts = summary.get("counts") or {}
    kept, pool = counts.get("kept_by_source") or {}, counts.get("by_source") or {}
    rows = []
    for source in summary.get("sources") or []:
        if not isinstance(source, dict):
            continue
        name = source.get("name")
        rows.append({"name": name, "hub": source.get("hub") or source.get("hub_id"), "split": source.get("split"),
                     "rows": source["rows"] if source.get("rows") is not None else kept.get(name),
                     "pool_rows": pool.get(name), "license": source.get("license")})
    return rows


def card_identity(provenance: dict) -> dict:
    """Reader model and SAE identity from either provenance shape: curate's flat one (``reader_model``,
    ``sae``, ``sae_hash``, ``top_k``) or nested mappings (``reader_model: {name, revision}``, ``sae: {id, hash}``)."""
    reader = provenance.get("reader_model")
    sae = provenance.get("sae")
    reader = reader if isinstance(reader, dict) else {"name": reader or provenance.get("model")}
    sae = sae if isinstance(sae, dict) else {"id": sae or provenance.get("sae_id")}
    return {
        "reader": reader.get("name"),
        "reader_revision": reader.get("revision") or provenance.get("reader_revision") or provenance.get(
            "model_revision"),
        "sae": sae.get("id"),
        "sae_hash": sae.get("hash") or provenance.get("sae_hash"),
        "d_sae": sae.get("d_sae") or provenance.get("d_sae"),
        "layer": provenance.get("layer"),
        "hook": provenance.get("hook") or provenance.get("hook_name"),
        "pooling": provenance.get("pooling"),
        "pooling_parts": {k: v for k, v in (provenance.get("pooling_parts") or {}).items() if v},
        "k": provenance.get("top_k") or provenance.get("k"),
        "dtype": provenance.get("dtype"),
    }


def render_card(readme: str, repo_id: str, revision: str, provenance: dict, summary: dict, record: dict,
                columns: list[tuple[str, str]], explanations: list[dict] | None = None) -> str:
    """The curated dataset's card from ``templates/dataset_card.md``, keeping the YAML that ``push_to_hub``
    wrote (configs, dataset_info). ``explanations`` (``saerl_hf.signals.explain.probe_explanations``; default:
    ``summary["explanations"]`` when curate stored them) adds the "What the probes look at" section."""
    from huggingface_hub import DatasetCard, DatasetCardData

    existing = DatasetCard(readme).data.to_dict() if readme.strip() else {}
    sources = card_sources(summary)
    licenses = sorted({s["license"] for s in sources if s.get("license")})
    ours = {
        "license": "other" if len(licenses) != 1 else _license_id(licenses[0]),
        "tags": ["saerl", "sparse-autoencoder", "curriculum-learning", "math", "grpo"],
        "source_datasets": sorted({s["hub"] for s in sources if s["hub"]}),  # Hub ids only (local sets: table)
        "task_categories": ["text-generation"],
        "language": ["en"],
    }
    config = _current_names(summary.get("config") or {})
    counts = summary.get("counts") or {}
    card = render_card_template(
        DatasetCard, "dataset_card.md", DatasetCardData(**{**existing, **ours}),
        repo_id=repo_id, revision=revision, provenance=provenance, summary=summary, record=record,
        sources=sources, licenses=licenses, columns=[(n, t, COLUMN_DOCS.get(n, "")) for n, t in columns],
        identity=card_identity(provenance),
        settings=[(key, config[key]) for key in CURATION_SETTINGS if key in config],
        curriculum=card_curriculum(summary), metrics=summary.get("metrics") or {},
        counts=_flat_counts(counts),
        explanations=explanations if explanations is not None else summary.get("explanations") or [],
        versions={**(provenance.get("versions") or provenance.get("library_versions") or {}), **record["versions"]},
    )
    return str(card)


def card_curriculum(summary: dict) -> dict:
    """curate's ``curriculum`` block (an older summary's ``order`` block, ``mode`` / ``mixing``, reads the same)."""
    from saerl_hf.curriculum import OLD_CURRICULUM_KEYS

    block = summary.get("curriculum") or summary.get("order") or {}
    return {OLD_CURRICULUM_KEYS.get(key, key): value for key, value in block.items()}


def _current_names(config: dict) -> dict:
    """A saved curate config with its deprecated keys under today's names (see saerl_hf.configs.RENAMED_OPTIONS)."""
    from saerl_hf.configs import RENAMED_OPTIONS

    renamed = {old: new for old, new in RENAMED_OPTIONS["CurateConfig"].items() if isinstance(new, str)}
    return {renamed.get(key, key): value for key, value in config.items()}


def _flat_counts(counts: dict) -> dict:
    """Scalar counts, one level of nesting flattened (``quality: n_dropped``); per-source counts are left to the
    sources table."""
    out = {}
    for key, value in counts.items():
        if key.endswith("by_source"):
            continue
        if isinstance(value, dict):
            out.update({f"{key}: {sub}": v for sub, v in value.items() if isinstance(v, (int, float, str))})
        elif isinstance(value, (int, float, str)):
            out[key] = value
    return out


def _license_id(text: str) -> str:
    known = {"mit": "mit", "apache-2.0": "apache-2.0", "cc by-nc 4.0": "cc-by-nc-4.0", "cc-by-4.0": "cc-by-4.0"}
    return known.get(text.strip().lower(), "other")
