"""The SAE's training data: texts of the configured math sets, streamed through the reader as activations.

Activations come from the model with an early exit at the SAE's layer (or from an
:class:`~saerl_hf.activation_cache.ActivationCache` that an earlier run with the same texts filled) and are
shuffled across texts in an in-memory mixing buffer before sae-lens sees them.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch

from saerl_hf.activations import ActivationError, residual_stream, right_pad

if TYPE_CHECKING:
    from saerl_hf.activation_cache import ActivationCache
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
    """Problems (+ solutions) of the configured math sets, as the SAE should see them, shuffled by seed; with
    ``general_text_fraction`` > 0 that fraction of the texts is general prose (:func:`general_texts`) instead."""
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
    rng = random.Random(config.seed)
    rng.shuffle(texts)
    n_math, n_general = mix_sizes(len(texts), config.general_text_fraction, config.max_texts)
    texts = texts[:n_math]
    if n_general:
        prose = general_texts(n_general, _parse_packages(config.general_text_packages), config.seed)
        texts += [render_prompt(tokenizer, t) if config.text_format == "chat" else t + "\n" for t in prose]
        rng.shuffle(texts)
    if not texts:
        raise ValueError(f"No training text found in sources '{config.sources}'.")
    return texts


def mix_sizes(n_available: int, fraction: float, max_texts: int | None) -> tuple[int, int]:
    """``(math texts, general texts)`` so that general text is ``fraction`` of the total (rounded), the total is
    at most ``max_texts`` and every math text available is used when ``max_texts`` allows."""
    total = int(n_available / (1.0 - fraction)) if fraction else n_available
    if max_texts is not None:
        total = min(total, max_texts)
    n_general = round(fraction * total)
    return min(total - n_general, n_available), n_general


def _parse_packages(packages: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in packages.split(",") if p.strip())


def general_texts(n: int, packages: tuple[str, ...], seed: int = 0) -> list[str]:
    """``n`` paragraphs of general English prose for the SAE: first paragraphs of docstrings of ``packages``
    (:mod:`saerl_hf.docstring_text`), files visited in a seeded order until ``n`` are found, drawn with the seed.

    The quality probe's held-out packages (``REAL_TEXT_PACKAGES``) are refused and paragraphs they also contain
    are left out, so the SAE never sees the text its held-out negatives come from."""
    from saerl_hf.docstring_text import (
        REAL_TEXT_PACKAGES,
        docstring_paragraphs,
        held_out_paragraphs,
        package_source_files,
    )

    refused = sorted({p.split(".")[0] for p in packages} & set(REAL_TEXT_PACKAGES))
    if refused:
        raise ValueError(f"general_text_packages includes {refused}, the quality probe's held-out real-text "
                         f"packages ({', '.join(REAL_TEXT_PACKAGES)}). Fix: pass other packages.")
    if not packages:
        raise ValueError("general_text_packages is empty. Fix: give e.g. 'email,logging,torch'.")
    files = package_source_files(packages)
    rng = random.Random(seed)
    rng.shuffle(files)
    found = docstring_paragraphs(files, n, exclude=held_out_paragraphs())
    if len(found) < n:
        raise ValueError(f"Only {len(found)} docstring paragraphs in {packages}; {n} needed for the general text. "
                         f"Fix: add packages to --general_text_packages or lower --general_text_fraction.")
    return rng.sample(sorted(found), n)


def _encode_texts(tokenizer, texts: list[str], context_size: int, chat: bool) -> list[list[int]]:
    # Chat-formatted text already carries its special tokens; plain text gets the tokenizer's own (BOS).
    enc = tokenizer(texts, add_special_tokens=not chat, truncation=True, max_length=context_size)
    return [ids for ids in enc["input_ids"] if len(ids) > 1]


def stream_activations(model, tokenizer, texts: list[str], layer: int, context_size: int = 256,
                       model_batch_size: int = 16, chat: bool = True, device: str = "cpu",
                       cycle: bool = True, start: int = 0, cache: ActivationCache | None = None) -> ActivationStream:
    """(n_tokens, d_model) activation blocks, one per model batch, forever if ``cycle``; see
    :class:`ActivationStream` (``start`` resumes at a ``position`` it reported)."""
    return ActivationStream(model, tokenizer, texts, layer, context_size, model_batch_size, chat, device, cycle,
                            start, cache)


class ActivationStream:
    """Iterator of activation blocks that knows its place: ``position`` counts the texts handed out so far
    (across cycles), and a stream built with ``start=position`` goes on from there without a model forward for
    the texts before it.

    Position 0 is left out: its residual norm is ~100x the others (attention sink) and would dominate the
    SAE's reconstruction loss. Texts are length-sorted in chunks so little compute goes to padding; a resumed
    stream re-tokenizes its first chunk to find its place in it.
    """

    def __init__(self, model, tokenizer, texts: list[str], layer: int, context_size: int = 256,
                 model_batch_size: int = 16, chat: bool = True, device: str = "cpu", cycle: bool = True,
                 start: int = 0, cache: ActivationCache | None = None):
        if not texts:
            raise ValueError("No texts to stream.")
        self.model, self.tokenizer, self.texts, self.layer = model, tokenizer, texts, layer
        self.context_size, self.model_batch_size, self.chat, self.device = context_size, model_batch_size, chat, device
        self.cycle, self.position, self.cache = cycle, start, cache
        self._blocks = self._generate(start)

    def __iter__(self):
        return self

    def __next__(self) -> torch.Tensor:
        return next(self._blocks)

    def _generate(self, start: int) -> Iterator[torch.Tensor]:
        n, chunk_size, batch = len(self.texts), self.model_batch_size * 16, self.model_batch_size
        epoch, offset = divmod(start, n)
        first_chunk = offset // chunk_size * chunk_size
        skip = offset - first_chunk  # sequences of the (sorted) first chunk already handed out
        while True:
            for chunk_start in range(first_chunk, n, chunk_size):
                base = epoch * n + chunk_start
                chunk_texts = self.texts[chunk_start : chunk_start + chunk_size]
                chunk = _encode_texts(self.tokenizer, chunk_texts, self.context_size, self.chat)
                chunk.sort(key=len)
                for b in range(skip, len(chunk), batch):
                    seqs = chunk[b : b + batch]
                    self.position = base + b + len(seqs)
                    yield self._activations(seqs)
                skip = 0
                self.position = base + len(chunk_texts)  # texts too short to keep count as consumed
            if not self.cycle:
                return
            epoch, first_chunk = epoch + 1, 0

    def _activations(self, seqs: list[list[int]]) -> torch.Tensor:
        cached = self.cache.get(seqs) if self.cache is not None else None
        if cached is not None:
            return cached.to(self.device)
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids, mask = right_pad(seqs, pad_id, self.device)
        acts = residual_stream(self.model, ids, mask, self.layer)
        keep = mask.bool().clone()
        keep[:, 0] = False
        native = acts[keep]
        block = native.float()
        if not torch.isfinite(block).all():
            raise ActivationError(f"NaN/inf activations at layer {self.layer} in a training batch.")
        if self.cache is not None:
            self.cache.put(seqs, native)
        return block


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
