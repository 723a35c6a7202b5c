"""Load sparse autoencoders (local dir, Hub repo, sae-lens registry) and check their width against the reader.

``load_sae`` takes a local dir, a Hub repo id (``snapshot_download``) or a sae-lens registry entry
(``release:sae_id``); the reader model need not be the policy model, only its hidden size must match.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from saerl_hf.activations import layer_from_hook
from saerl_hf.models import ModelNotFoundError, cache_dir, file_sha256, resolve_model_path

SAE_WEIGHTS = "sae_weights.safetensors"
SAE_CFG = "cfg.json"
TRAINING_FILE = "sae_training.json"  # the training config and metrics `train-sae` saves beside the weights
OLD_TRAINING_FILE = "saerl_training.json"  # its old name, still read (SAEs trained before keep it)


class SAELoadError(ValueError):
    """An SAE spec that cannot be resolved or does not fit the reader model; the message says the fix."""


def model_alias(name_or_path: str) -> str:
    """A filesystem-safe short name for a model (alias, last path part, or Hub id with '/' -> '--')."""
    path = Path(name_or_path)
    if path.exists():
        return path.name or "model"
    return name_or_path.replace("/", "--")


def sae_training_info(sae_dir) -> dict:
    """The training config and metrics saved beside a locally trained SAE (either file name); {} when none."""
    for name in (TRAINING_FILE, OLD_TRAINING_FILE):
        path = Path(str(sae_dir or "")) / name
        if path.is_file():
            return json.loads(path.read_text())
    return {}


def default_sae_dir(model: str = "smollm2-135m", layer: int = 15, d_sae: int = 4096, k: int | None = 32,
                    architecture: str = "topk") -> Path:
    """Where ``train-sae`` saves (and the curate pipeline looks for) the SAE of a model/layer/width/k."""
    name = f"{model_alias(model)}-L{layer}-{architecture}-w{d_sae}"
    if architecture == "topk" and k is not None:
        name += f"-k{k}"
    return cache_dir() / "saes" / name



@dataclass
class SAEHandle:
    """A loaded SAE plus what provenance needs: where it came from, its content hash, its hook/layer."""

    sae: object
    source: str
    sha256: str
    hook: str | None
    layer: int | None
    path: str | None = None

    @property
    def d_in(self) -> int:
        return int(self.sae.cfg.d_in)

    @property
    def d_sae(self) -> int:
        return int(self.sae.cfg.d_sae)


def _model_hidden_size(model_name: str, trust_remote_code: bool = False) -> int:
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(resolve_model_path(model_name), trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        if isinstance(err, ModelNotFoundError):
            raise
        raise ModelNotFoundError(f"Could not read the config of model '{model_name}': {err} Fix: pass a directory "
                                 f"written by `save_pretrained` (valid config.json), an alias, or a Hub id.") from None
    config = getattr(config, "text_config", None) or config
    return int(config.hidden_size)


def _check_width(d_in: int, model_name: str | None, where: str):
    if model_name is None:
        return
    hidden = _model_hidden_size(model_name)
    if hidden != d_in:
        raise SAELoadError(
            f"SAE {where} reads vectors of width d_in={d_in}, but model '{model_name}' has hidden size {hidden}. "
            f"Fix: use an SAE trained on this model (`saerl-hf train-sae --model {model_name}`) or pass the "
            f"reader model it was trained on."
        )


def _state_dict_sha256(sae) -> str:
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous() for k, v in sorted(sae.state_dict().items())}
    return hashlib.sha256(save(state)).hexdigest()


def _load_dir(path: Path, model_name: str | None, device: str) -> SAEHandle:
    from sae_lens import SAE

    if not (path / SAE_CFG).is_file() or not (path / SAE_WEIGHTS).is_file():
        raise SAELoadError(
            f"{path} is not a sae-lens SAE directory (needs {SAE_CFG} and {SAE_WEIGHTS}). "
            f"Fix: pass a dir written by `saerl-hf train-sae` / `save_inference_model`."
        )
    fix = (f"Fix: re-download or re-train the SAE (`saerl-hf train-sae --output_dir {path} --overwrite true`); "
           f"a copy that was cut off or edited by hand cannot be used.")
    try:
        cfg = json.loads((path / SAE_CFG).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SAELoadError(f"{path / SAE_CFG} is not valid JSON ({err}). {fix}") from None
    try:
        d_in = int(cfg["d_in"])
    except (KeyError, TypeError, ValueError):
        raise SAELoadError(f"{path / SAE_CFG} has no integer 'd_in' (the width of the vectors the SAE reads). "
                           f"{fix}") from None
    _check_width(d_in, model_name, str(path))  # before the weights are read
    try:
        sae = SAE.load_from_disk(path, device=device)
    except Exception as err:  # noqa: BLE001 - a truncated/corrupt safetensors file or a cfg/weights mismatch
        raise SAELoadError(f"Could not read the SAE in {path} ({SAE_WEIGHTS} or {SAE_CFG} is corrupt or truncated: "
                           f"{type(err).__name__}: {str(err)[:300]}). {fix}") from None
    hook = (cfg.get("metadata") or {}).get("hook_name")
    return SAEHandle(sae=sae, source=str(path), sha256=file_sha256(path / SAE_WEIGHTS), hook=hook,
                     layer=layer_from_hook(hook), path=str(path))


def load_sae(spec: str | Path, model_name: str | None = None, sae_id: str | None = None,
             device: str = "cpu") -> SAEHandle:
    """Load an SAE from a local dir, a Hub repo id, or the sae-lens registry.

    ``spec``: a directory; ``org/repo`` (downloaded with ``snapshot_download``; ``org/repo:subdir`` for an SAE
    in a subfolder); or a registry ``release`` with ``sae_id`` (or ``"release:sae_id"``). With
    ``model_name``, an SAE whose width differs from the model's hidden size fails before any model work.
    """
    spec = str(spec)
    path = Path(spec).expanduser()
    if path.is_dir():
        return _load_dir(path, model_name, device)
    if path.is_file():
        raise SAELoadError(f"SAE '{spec}' is a file; an SAE is a directory with {SAE_CFG} and {SAE_WEIGHTS}. "
                           f"Fix: pass the directory that holds it ({path.parent}).")
    if spec.startswith((".", "/", "~")):
        raise SAELoadError(f"SAE directory '{spec}' does not exist. Fix: check the path, or train one with "
                           f"`saerl-hf train-sae`.")
    release, _, inline_id = spec.partition(":")
    sae_id = sae_id or inline_id or None
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    directory = get_pretrained_saes_directory()
    if release in directory:
        if sae_id is None:
            raise SAELoadError(f"sae-lens release '{release}' needs an sae_id. Fix: pass 'release:sae_id'; "
                               f"known ids: {', '.join(list(directory[release].saes_map)[:10])} ...")
        return _load_registry(release, sae_id, model_name, device)
    if "/" in release:
        return _load_hub(release, sae_id, model_name, device)
    raise SAELoadError(
        f"Cannot resolve SAE '{spec}': not a local directory, not a Hub repo id ('org/name'), and not a sae-lens "
        f"registry release. Fix: pass a dir from `saerl-hf train-sae`, a Hub repo, or 'release:sae_id'."
    )


def _load_hub(repo_id: str, subfolder: str | None, model_name: str | None, device: str) -> SAEHandle:
    from huggingface_hub import HfApi, snapshot_download

    from saerl_hf.hub import is_unsafe_repo_path

    if subfolder and is_unsafe_repo_path(subfolder.strip("/")):
        raise SAELoadError(f"SAE subfolder '{subfolder}' of '{repo_id}' is not a plain relative path inside the repo "
                           f"(absolute, '..' or backslashes). Fix: pass 'org/repo:<folder in the repo>'.")
    patterns = [f"{subfolder}/*"] if subfolder else None
    fix = "Fix: check the id, HF_ENDPOINT / HF_TOKEN, or pass a local directory."
    from huggingface_hub import constants

    if not constants.HF_HUB_OFFLINE:  # offline, snapshot_download reads the (already checked) cache only
        try:
            bad = [name for name in HfApi().list_repo_files(repo_id) if is_unsafe_repo_path(name)]
        except Exception as err:  # network, auth, missing repo: all end here with the fix
            raise SAELoadError(f"Could not list SAE repo '{repo_id}' on the Hub: {err}. {fix}") from err
        if bad:
            raise SAELoadError(f"SAE repo '{repo_id}' lists the file {bad[0]!r}, a path that could be written outside "
                               f"the download folder; nothing was downloaded. Fix: use another repo, or remove that "
                               f"file from it.")
    try:
        local = Path(snapshot_download(repo_id, allow_patterns=patterns))
    except Exception as err:  # network, auth, missing repo: all end here with the fix
        raise SAELoadError(f"Could not download SAE repo '{repo_id}' from the Hub: {err}. {fix}") from err
    handle = _load_dir(local / subfolder if subfolder else local, model_name, device)
    handle.source = f"{repo_id}:{subfolder}" if subfolder else repo_id
    return handle


def _load_registry(release: str, sae_id: str, model_name: str | None, device: str) -> SAEHandle:
    from sae_lens import SAE

    try:
        sae = SAE.from_pretrained(release, sae_id, device=device)
    except Exception as err:
        raise SAELoadError(f"Could not load sae-lens registry SAE '{release}:{sae_id}': {err}") from err
    _check_width(int(sae.cfg.d_in), model_name, f"'{release}:{sae_id}'")
    hook = sae.cfg.metadata.hook_name
    return SAEHandle(sae=sae, source=f"{release}:{sae_id}", sha256=_state_dict_sha256(sae), hook=hook,
                     layer=layer_from_hook(hook))


# ----------------------------------------------------------------------------- CLI
