"""Pass-rate labels (open-r1 style): k sampled completions per prompt, scored against ``answer``.

This is the expensive label the difficulty proxy replaces: run it on a small subset, fit
``DifficultyProbe(DifficultyConfig(label_column="pass_rate"))`` on it (higher pass rate = easier, the probe
flips the sign), and score everything else from SAE features.

Generation picks its backend the way the evaluation does (:func:`saerl_hf.generation.select_backend`): vLLM when
it is installed and a CUDA GPU is present, HF ``generate`` otherwise (``backend=`` forces one).
"""

from __future__ import annotations

import json
import zlib
from dataclasses import asdict, dataclass, field

# One (model, tokenizer) per process and model path: the map function itself stays small and picklable.
_LOADED: dict[str, tuple[object, object]] = {}


@dataclass
class PassRateConfig:
    """How pass rates are sampled."""

    model: str = field(default="smollm2-135m", metadata={"help": "Policy whose pass rate is measured: alias, dir "
                                                                 "or Hub id."})
    k: int = field(default=4, metadata={"help": "Sampled completions per prompt."})
    max_new_tokens: int = field(default=256, metadata={"help": "Completion budget per sample."})
    temperature: float = field(default=0.8, metadata={"help": "Sampling temperature."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling."})
    generation_batch_size: int = field(default=32, metadata={"help": "Prompts per generate call."})
    seed: int = field(default=0, metadata={"help": "Base seed; each map batch derives its own from its problems."})
    backend: str = field(default="auto", metadata={"help": "auto (vLLM when installed and a GPU is present, as in "
                                                           "the evaluation), transformers, vllm."})
    problem_column: str = field(default="problem", metadata={"help": "Problem text column."})
    answer_column: str = field(default="answer", metadata={"help": "Gold answer column."})
    source_column: str = field(default="source", metadata={"help": "Source column (picks prompt/answer family)."})


def _load(model_name: str, backend: str = "transformers"):
    """(model, tokenizer) for HF generate, or (vllm.LLM, tokenizer) for vLLM; once per process."""
    key = f"{backend}:{model_name}"
    if key not in _LOADED:
        from saerl_hf.models import load_model, load_tokenizer, resolve_model_path

        if backend == "vllm":
            from vllm import LLM

            model = LLM(model=str(resolve_model_path(model_name)), seed=0)
        else:
            model = load_model(model_name)
            model.eval()
        _LOADED[key] = (model, load_tokenizer(model_name, padding_side="left"))
    return _LOADED[key]


class PassRateLabeller:
    """Batched ``datasets.map`` function adding ``pass_rate`` (fraction of k samples correct), ``n_samples`` and
    ``n_cut`` (samples that used the whole budget; None where the backend does not say). Holds only its config; the model loads lazily, once per process."""

    def __init__(self, config: PassRateConfig | None = None):
        self.config = config if config is not None else PassRateConfig()
        if self.config.k < 1:
            raise ValueError(f"k must be >= 1, got {self.config.k}.")

    def backend(self) -> str:
        """'vllm' or 'transformers': the evaluation's rule (vLLM when installed and a GPU is present)."""
        from saerl_hf.generation import select_backend

        return select_backend(self.config.backend, model_is_path=True)

    def __call__(self, batch: dict) -> dict:
        from saerl_hf.answers import is_correct
        from saerl_hf.generation import generate, generate_vllm
        from saerl_hf.prompts import family_of, render_prompt

        config = self.config
        for column in (config.problem_column, config.answer_column):
            if column not in batch:
                raise KeyError(f"The pass-rate labeller needs a '{column}' column (batch has {list(batch)}).")
        problems, golds = batch[config.problem_column], batch[config.answer_column]
        sources = batch.get(config.source_column) or [None] * len(problems)
        backend = self.backend()
        model, tokenizer = _load(config.model, backend)
        prompts = [render_prompt(tokenizer, p, s) for p, s in zip(problems, sources)]
        seed = (config.seed * 1_000_003 + zlib.crc32("\x1f".join(problems).encode())) % (2**31)
        if backend == "vllm":
            completions = generate_vllm(None, prompts, max_new_tokens=config.max_new_tokens,
                                        temperature=config.temperature, top_p=config.top_p, n=config.k, seed=seed,
                                        llm=model)
            finished = [None] * len(completions)  # vLLM's texts carry no finish flag here
        else:
            completions, _, finished = generate(model, tokenizer, prompts, max_new_tokens=config.max_new_tokens,
                                                temperature=config.temperature, top_p=config.top_p, n=config.k,
                                                batch_size=config.generation_batch_size, seed=seed,
                                                return_details=True)
        pass_rates, n_samples, n_cut = [], [], []
        for samples, gold, source, done in zip(completions, golds, sources, finished):
            family = family_of(source)
            correct = [is_correct(text, str(gold) if gold is not None else "", family) for text in samples]
            n_samples.append(len(samples))
            pass_rates.append(sum(correct) / len(samples) if samples else float("nan"))
            n_cut.append(None if done is None else sum(not d for d in done))
        return {"pass_rate": pass_rates, "n_samples": n_samples, "n_cut": n_cut}

    def fingerprint(self) -> str:
        from saerl_hf.models import model_identity
        from saerl_hf.signals.persistence import fingerprint_of

        settings = {**asdict(self.config), "backend": self.backend()}  # samples differ between backends
        # "n_cut": the columns a labelled set carries are part of the cache key (older caches lack it)
        return fingerprint_of("passrate", "n_cut", model_identity(self.config.model),
                              json.dumps(settings, sort_keys=True))


def label_pass_rates(dataset, config: PassRateConfig | None = None, batch_size: int = 32, **map_kwargs):
    """``dataset`` with ``pass_rate`` and ``n_samples``; cached by (input fingerprint, model, settings)."""
    from saerl_hf.signals.persistence import fingerprint_of

    labeller = PassRateLabeller(config)
    return dataset.map(labeller, batched=True, batch_size=batch_size,
                       new_fingerprint=fingerprint_of(dataset._fingerprint, labeller.fingerprint()),
                       desc=f"pass@{labeller.config.k} labels", **map_kwargs)
