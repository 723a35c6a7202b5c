"""Batched text generation for evaluation and pass-rate labelling (transformers; vLLM on a GPU when installed).

Prompts are tokenized once, sorted by length and generated in left-padded batches: on CPU batching is
what makes a benchmark run affordable (see docs/benchmarks.md), and length sorting keeps padding small.
"""

from __future__ import annotations

import copy
import importlib.util
import inspect
import logging
from collections.abc import Sequence
from contextlib import contextmanager

from saerl_hf.activations import cache_keyword

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "transformers", "vllm")


def vllm_available() -> bool:
    """vLLM is installed and a CUDA GPU is present (vLLM's CPU build is not worth it for 135M models)."""
    if importlib.util.find_spec("vllm") is None:
        return False
    import torch

    return torch.cuda.is_available()


def select_backend(backend: str = "auto", model_is_path: bool = True) -> str:
    """'vllm' when asked for (or 'auto' with vLLM + GPU and a model given by path), else 'transformers'."""
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r}; use one of {BACKENDS}.")
    if backend == "vllm":
        if not vllm_available():
            raise RuntimeError("backend='vllm' needs `pip install vllm` and a CUDA GPU; use backend='transformers'.")
        if not model_is_path:
            raise ValueError("backend='vllm' loads the model itself: pass a model path or Hub id, not a loaded model.")
        return "vllm"
    if backend == "auto" and model_is_path and vllm_available():
        return "vllm"
    return "transformers"


def _check_prompts(prompts: Sequence[str]) -> list[str]:
    if isinstance(prompts, str):
        raise TypeError("prompts must be a list of strings, not one string; wrap it: [prompt].")
    prompts = list(prompts)
    for i, prompt in enumerate(prompts):
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"prompts[{i}] is {prompt!r}: every prompt must be a non-empty string.")
    return prompts


def _check_settings(max_new_tokens: int, temperature: float, top_p: float, n: int, batch_size: int) -> None:
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens}; it must be >= 1.")
    if temperature < 0:
        raise ValueError(f"temperature={temperature}; use 0 for greedy decoding or a positive value to sample.")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p={top_p}; it must be in (0, 1].")
    if n < 1 or batch_size < 1:
        raise ValueError(f"n={n}, batch_size={batch_size}; both must be >= 1.")


def _encode(tokenizer, prompt: str) -> list[int]:
    """Token ids of a prompt; no second BOS when the (chat-templated) text already starts with one."""
    bos = getattr(tokenizer, "bos_token", None)
    add_special = not (bos and prompt.startswith(bos))
    return tokenizer(prompt, add_special_tokens=add_special)["input_ids"]


# Generation-config options whose logits processing the compacting greedy loop does not reproduce.
_PROCESSOR_OPTIONS = {"repetition_penalty": (None, 1.0), "no_repeat_ngram_size": (None, 0), "bad_words_ids": (None,),
                      "min_new_tokens": (None, 0), "min_length": (None, 0), "suppress_tokens": (None,),
                      "begin_suppress_tokens": (None,), "forced_bos_token_id": (None,),
                      "forced_eos_token_id": (None,), "sequence_bias": (None,), "encoder_repetition_penalty":
                      (None, 1.0), "exponential_decay_length_penalty": (None,), "renormalize_logits": (None, False)}


def _can_compact(model, config) -> bool:
    """Plain greedy decoding of a decoder-only model with a dynamic KV cache."""
    if getattr(model.config, "is_encoder_decoder", False):
        return False
    if any(getattr(config, name, None) not in allowed for name, allowed in _PROCESSOR_OPTIONS.items()):
        return False
    return "logits_to_keep" in inspect.signature(model.forward).parameters


def _greedy_compacting(model, input_ids, attention_mask, max_new_tokens: int, stop_ids: set) -> list[list[int]]:
    """Greedy decoding that drops finished rows from the batch (and the KV cache) as it goes.

    ``model.generate`` keeps computing rows that already emitted EOS until the longest one is done; with
    a small model's completions ranging from 10 to 500 tokens that is a large share of the work.
    Same tokens as ``model.generate(do_sample=False)``: the slow test checks it on SmolLM2.
    """
    import torch
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    cache_kw = cache_keyword(model)
    position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                use_cache=True, logits_to_keep=1, **{cache_kw: cache})
    alive = torch.arange(input_ids.shape[0])
    tokens: list[list[int]] = [[] for _ in range(input_ids.shape[0])]
    stop = torch.tensor(sorted(stop_ids), device=input_ids.device)
    mask = attention_mask
    for step in range(max_new_tokens):
        next_tokens = out.logits[:, -1, :].argmax(-1)
        for row, token in zip(alive.tolist(), next_tokens.tolist()):
            tokens[row].append(token)
        if step == max_new_tokens - 1:
            break
        done = torch.isin(next_tokens, stop)
        if done.any():
            keep = (~done).nonzero().squeeze(-1)
            if keep.numel() == 0:
                break
            cache.batch_select_indices(keep)
            alive, next_tokens, mask = alive[keep.cpu()], next_tokens[keep], mask[keep]
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=-1)
        out = model(input_ids=next_tokens[:, None], attention_mask=mask,
                    position_ids=mask.long().sum(-1, keepdim=True) - 1, use_cache=True, **{cache_kw: cache})
    return tokens


def _generation_config(model, tokenizer, max_new_tokens: int, temperature: float, top_p: float):
    """The model's generation config set for this call: greedy at temperature 0, else sampling with top_p."""
    config = copy.deepcopy(model.generation_config)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    config.update(max_new_tokens=max_new_tokens, pad_token_id=pad_id, num_return_sequences=1, max_length=None,
                  min_length=0)
    if temperature == 0:
        config.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    else:
        config.update(do_sample=True, temperature=float(temperature), top_p=float(top_p), top_k=0)
    return config


def _generate_batch(model, input_ids, attention_mask, config, stop_ids: set, compact: bool,
                    seed: int | None) -> list[list[int]]:
    """New token ids per row of one left-padded batch; ``seed`` (sampling only) seeds torch first."""
    import torch

    if compact:
        return _greedy_compacting(model, input_ids, attention_mask, config.max_new_tokens, stop_ids)
    if seed is not None:
        torch.manual_seed(seed)
    generated = model.generate(input_ids=input_ids, attention_mask=attention_mask, generation_config=config)
    return generated[:, input_ids.shape[1]:].tolist()


class _Completions:
    """What :func:`generate` returns, per (prompt i, copy j): the text, the new-token count up to and including
    the first stop token (or all of them), and whether a stop token came before the budget ran out."""

    def __init__(self, n_prompts: int, copies: int):
        self.texts: list[list[str | None]] = [[None] * copies for _ in range(n_prompts)]
        self.counts: list[list[int]] = [[0] * copies for _ in range(n_prompts)]
        self.finished: list[list[bool]] = [[False] * copies for _ in range(n_prompts)]

    def record(self, jobs: list[tuple[int, int]], rows: list[list[int]], texts: list[str], stop_ids: set) -> None:
        """One batch: ``jobs[b] = (i, j)`` generated the token ids ``rows[b]``, decoded as ``texts[b]``."""
        for ids, (i, j), text in zip(rows, jobs, texts):
            stop = next((pos for pos, tok in enumerate(ids) if tok in stop_ids), None)
            self.texts[i][j] = text
            self.counts[i][j] = len(ids) if stop is None else stop + 1
            self.finished[i][j] = stop is not None

    def repeat(self, n: int) -> None:
        """Greedy decoding ran one copy per prompt: repeat it ``n`` times."""
        self.texts, self.counts, self.finished = ([row * n for row in table]
                                                  for table in (self.texts, self.counts, self.finished))


@contextmanager
def _eval_left_padded(model, tokenizer):
    """The model in eval mode and the tokenizer padding left for the call; both restored after, even on error."""
    was_training = model.training
    model.eval()
    old_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        yield
    finally:
        tokenizer.padding_side = old_side
        if was_training:
            model.train()


def generate(
    model,
    tokenizer,
    prompts: Sequence[str],
    max_new_tokens: int = 256,
    temperature: float = 0.0,
    top_p: float = 1.0,
    n: int = 1,
    batch_size: int = 32,
    seed: int = 0,
    progress: bool = True,
    desc: str = "generating",
    return_details: bool = False,
    compact_greedy: bool = True,
):
    """``n`` completions per prompt (``result[i][j]``), text after the prompt, special tokens dropped.

    With ``return_details=True`` returns ``(texts, new_token_counts, finished)`` where ``finished[i][j]``
    says the completion ended with EOS (False: cut at ``max_new_tokens``). Greedy decoding drops finished
    rows from the batch as it goes (``compact_greedy=False``: plain ``model.generate``).

    ``temperature=0`` is greedy (then the ``n`` completions are one completion repeated); otherwise
    multinomial sampling with ``top_p`` and no top-k cut. Sampling is reproducible for the same seed,
    prompts and batch size (each batch is seeded with ``seed + batch index``).
    """
    import torch
    from tqdm.auto import tqdm

    prompts = _check_prompts(prompts)
    _check_settings(max_new_tokens, temperature, top_p, n, batch_size)
    if not prompts:
        return []
    greedy = temperature == 0
    copies = 1 if greedy else n
    encoded = [_encode(tokenizer, prompt) for prompt in prompts]
    # Jobs = (prompt index, copy); longest first so the largest batch (memory peak) comes first.
    jobs = sorted(((i, c) for i in range(len(prompts)) for c in range(copies)), key=lambda job: -len(encoded[job[0]]))

    config = _generation_config(model, tokenizer, max_new_tokens, temperature, top_p)
    table = _Completions(len(prompts), copies)
    eos_ids = config.eos_token_id if isinstance(config.eos_token_id, (list, tuple)) else [config.eos_token_id]
    stop_ids = {i for i in eos_ids if i is not None} or {tokenizer.eos_token_id}
    compact = greedy and compact_greedy and _can_compact(model, config)
    device = next(model.parameters()).device
    with _eval_left_padded(model, tokenizer), torch.inference_mode(), tqdm(
            total=len(jobs), desc=desc, unit="seq", disable=not progress) as bar:
        for batch_index, start in enumerate(range(0, len(jobs), batch_size)):
            batch = jobs[start:start + batch_size]
            padded = tokenizer.pad([{"input_ids": encoded[i]} for i, _ in batch], padding=True, return_tensors="pt")
            rows = _generate_batch(model, padded["input_ids"].to(device), padded["attention_mask"].to(device),
                                   config, stop_ids, compact=compact, seed=None if greedy else seed + batch_index)
            table.record(batch, rows, tokenizer.batch_decode(rows, skip_special_tokens=True), stop_ids)
            bar.update(len(batch))
    if greedy and n > 1:
        table.repeat(n)
    return (table.texts, table.counts, table.finished) if return_details else table.texts


def generate_vllm(
    model_path: str,
    prompts: Sequence[str],
    max_new_tokens: int = 256,
    temperature: float = 0.0,
    top_p: float = 1.0,
    n: int = 1,
    seed: int = 0,
    trust_remote_code: bool = False,
    llm=None,
) -> list[list[str]]:
    """The same contract as :func:`generate` with vLLM (GPU). ``llm`` reuses an already built ``vllm.LLM``."""
    prompts = _check_prompts(prompts)
    _check_settings(max_new_tokens, temperature, top_p, n, 1)
    if not prompts:
        return []
    from vllm import LLM, SamplingParams

    if llm is None:
        llm = LLM(model=model_path, seed=seed, trust_remote_code=trust_remote_code)
    greedy = temperature == 0
    params = SamplingParams(n=1 if greedy else n, temperature=float(temperature), top_p=1.0 if greedy else top_p,
                            max_tokens=max_new_tokens, seed=seed)
    tokenizer = llm.get_tokenizer()
    requests = [{"prompt_token_ids": _encode(tokenizer, prompt)} for prompt in prompts]
    results = llm.generate(requests, params)
    texts = [[choice.text for choice in result.outputs] for result in results]
    return [t * n for t in texts] if greedy and n > 1 else texts
