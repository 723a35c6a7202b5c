"""The SAE's training data: texts of the configured math sets, streamed through the reader as activations.

Activations come from the model with an early exit at the SAE's layer (no activation files) and are shuffled
across texts in an in-memory mixing buffer before sae-lens sees them.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch

from saerl_hf.activations import ActivationError, residual_stream, right_pad

if TYPE_CHECKING:
    from saerl_hf.sae_train import TrainSAEConfig


def _parse_sources(sources: str) -> list[tuple[str, str | None]]:
    out = []
    for item in (s.strip() for s in sources.split(",")):
        if not item:
            continue
        name, _, split = item.partition(":")
        out.append((name, split or None))
    if not out:
        raise ValueError("`sources` is empty. Fix: give e.g. 'gsm8k:train,math:train'.")
    return out


def training_texts(config: TrainSAEConfig, tokenizer) -> list[str]:
    """Problems (+ solutions) of the configured math sets, as the SAE should see them; shuffled by seed."""
    from saerl_hf.data import load_math_dataset
    from saerl_hf.prompts import render_prompt

    texts: list[str] = []
    for name, split in _parse_sources(config.sources):
        ds = load_math_dataset(name, split=split)
        for row in ds:
            problem = (row.get("problem") or "").strip()
            if not problem:
                continue
            solution = (row.get("solution") or "").strip()
            if config.text_format == "chat":
                text = render_prompt(tokenizer, problem, row.get("source"))
            else:
                text = problem + "\n"
            texts.append(text + solution)
    random.Random(config.seed).shuffle(texts)
    if config.max_texts is not None:
        texts = texts[: config.max_texts]
    if not texts:
        raise ValueError(f"No training text found in sources '{config.sources}'.")
    return texts


def _encode_texts(tokenizer, texts: list[str], context_size: int, chat: bool) -> list[list[int]]:
    # Chat-formatted text already carries its special tokens; plain text gets the tokenizer's own (BOS).
    enc = tokenizer(texts, add_special_tokens=not chat, truncation=True, max_length=context_size)
    return [ids for ids in enc["input_ids"] if len(ids) > 1]


def stream_activations(model, tokenizer, texts: list[str], layer: int, context_size: int = 256,
                       model_batch_size: int = 16, chat: bool = True, device: str = "cpu",
                       cycle: bool = True) -> Iterator[torch.Tensor]:
    """Yield (n_tokens, d_model) activation blocks, one per model batch, forever if ``cycle``.

    Position 0 is left out: its residual norm is ~100x the others (attention sink) and would dominate the
    SAE's reconstruction loss. Texts are length-sorted in chunks so little compute goes to padding.
    """
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    while True:
        for start in range(0, len(texts), model_batch_size * 16):
            chunk = _encode_texts(tokenizer, texts[start : start + model_batch_size * 16], context_size, chat)
            chunk.sort(key=len)
            for b in range(0, len(chunk), model_batch_size):
                seqs = chunk[b : b + model_batch_size]
                ids, mask = right_pad(seqs, pad_id, device)
                acts = residual_stream(model, ids, mask, layer)
                keep = mask.bool().clone()
                keep[:, 0] = False
                block = acts[keep].float()
                if not torch.isfinite(block).all():
                    raise ActivationError(f"NaN/inf activations at layer {layer} in a training batch.")
                yield block
        if not cycle:
            return


class MixingBuffer:
    """Shuffles streamed activations across texts and yields fixed-size training batches."""

    def __init__(self, blocks: Iterator[torch.Tensor], batch_size: int, buffer_tokens: int, seed: int = 0):
        self.blocks, self.batch_size = blocks, batch_size
        self.buffer_tokens = max(buffer_tokens, 2 * batch_size)
        self.generator = torch.Generator().manual_seed(seed)
        self.store: torch.Tensor | None = None

    def _refill(self):
        parts = [] if self.store is None else [self.store]
        have = 0 if self.store is None else len(self.store)
        while have < self.buffer_tokens:
            block = next(self.blocks)
            parts.append(block)
            have += len(block)
        store = torch.cat(parts)
        self.store = store[torch.randperm(len(store), generator=self.generator)]

    def __iter__(self):
        return self

    def __next__(self) -> torch.Tensor:
        # Refill at half capacity so each batch mixes old and new texts.
        if self.store is None or len(self.store) < self.buffer_tokens // 2:
            self._refill()
        batch, self.store = self.store[: self.batch_size], self.store[self.batch_size :]
        return batch
