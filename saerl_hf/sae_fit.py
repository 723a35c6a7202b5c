"""The SAE training loop (sae-lens' ``SAETrainer`` through its public seams) and its resumable checkpoints.

A checkpoint is sae-lens' own (``SAETrainer.save_checkpoint``: SAE weights, optimizer, LR scheduler, step and
token counters, dead-latent statistics, activation scaling factor) plus ``resume.json``, the commit point,
with the text-stream position and the config. It lives in ``<output_dir>.ckpt/``, only the latest is kept, and
it is removed once the final SAE is saved.

Resume is not bit-identical to an uninterrupted run: the mixing buffer starts empty (its content is not saved;
the activations it held are dropped, their texts counted as seen). It sees the same texts in the same order,
the same token budget and the same number of steps, with the weights, optimizer and scaling factor restored.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from saerl_hf.errors import SaerlError

if TYPE_CHECKING:
    from saerl_hf.sae_data import ActivationStream, MixingBuffer
    from saerl_hf.sae_train import TrainSAEConfig

logger = logging.getLogger(__name__)

RESUME_FILE = "resume.json"
#: Options that do not change the trained SAE: a checkpoint written under other values of these still resumes.
NOT_RESULT_FIELDS = ("output_dir", "overwrite", "device", "checkpoint_every", "trust_remote_code",
                     "activation_cache")


def training_sae(config: TrainSAEConfig, d_in: int, device: str):
    """A fresh sae-lens training SAE of the configured architecture."""
    from sae_lens import (
        JumpReLUTrainingSAE,
        JumpReLUTrainingSAEConfig,
        StandardTrainingSAE,
        StandardTrainingSAEConfig,
        TopKTrainingSAE,
        TopKTrainingSAEConfig,
    )

    common = dict(d_in=d_in, d_sae=config.d_sae, device=device, normalize_activations=config.normalize_activations)
    if config.architecture == "topk":
        return TopKTrainingSAE(TopKTrainingSAEConfig(k=config.k, aux_loss_coefficient=config.aux_loss_coefficient,
                                                     **common))
    if config.architecture == "standard":
        return StandardTrainingSAE(StandardTrainingSAEConfig(l1_coefficient=config.l1_coefficient, **common))
    return JumpReLUTrainingSAE(
        JumpReLUTrainingSAEConfig(
            l0_coefficient=config.l0_coefficient, jumprelu_init_threshold=config.jumprelu_init_threshold, **common
        )
    )


def trainer_config(config: TrainSAEConfig):
    """sae-lens' ``SAETrainerConfig`` for this run: token budget, LR schedule, dead-latent window."""
    from sae_lens.config import SAETrainerConfig

    total_steps = max(1, config.training_tokens // config.train_batch_size)
    return SAETrainerConfig(
        total_training_samples=total_steps * config.train_batch_size,
        train_batch_size_samples=config.train_batch_size,
        lr=config.lr,
        lr_end=config.lr / 10,
        lr_warm_up_steps=min(config.lr_warm_up_steps, total_steps // 10),
        lr_decay_steps=int(total_steps * config.lr_decay_fraction),
        device=config.device,
        dead_feature_window=config.dead_feature_window,
        feature_sampling_window=max(config.dead_feature_window, 100),
        n_batches_for_norm_estimate=8,
    )


def result_settings(config: TrainSAEConfig) -> dict:
    """The options that change the trained SAE (what a checkpoint must agree on to be resumed)."""
    return {k: v for k, v in asdict(config).items() if k not in NOT_RESULT_FIELDS}


class CheckpointError(SaerlError, ValueError):
    """A train-sae checkpoint that cannot be resumed as asked (the CLI shows it as one line naming the fix)."""


@dataclass
class ResumePoint:
    """Where a checkpoint left off: its sae-lens dir, the text-stream position, the counters."""

    path: Path
    texts_consumed: int
    n_training_steps: int
    n_training_samples: int


class TrainingCheckpoint:
    """The latest resumable state of one ``train-sae`` run, in ``<output_dir>.ckpt/``."""

    def __init__(self, out_dir: Path, config: TrainSAEConfig):
        self.root = out_dir.with_name(out_dir.name + ".ckpt")
        self.settings = result_settings(config)

    def find(self, overwrite: bool) -> ResumePoint | None:
        """The resume point of an earlier run with the same settings; None if there is none (or ``overwrite``,
        which deletes it). Other settings are an error that names the fix."""
        info_path = self.root / RESUME_FILE
        if overwrite or not info_path.is_file():
            if self.root.exists():
                logger.info("train-sae: removing %s (%s)", self.root,
                            "--overwrite true" if overwrite else "no resume.json: an unfinished first checkpoint")
                shutil.rmtree(self.root)
            return None
        info = json.loads(info_path.read_text())
        changed = {k: (info["config"].get(k), v) for k, v in self.settings.items() if info["config"].get(k) != v}
        if changed:
            diff = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in sorted(changed.items()))
            raise CheckpointError(f"A train-sae checkpoint at {self.root} was written with other settings ({diff}). "
                                  f"Fix: pass --overwrite true to start over, or delete {self.root}, or rerun with the "
                                  f"checkpoint's settings to resume it.")
        path = self.root / info["checkpoint"]
        if not path.is_dir():
            raise CheckpointError(f"{info_path} points at {path}, which is missing. Fix: pass --overwrite true to "
                                  f"start over, or delete {self.root}.")
        return ResumePoint(path, int(info["texts_consumed"]), int(info["n_training_steps"]),
                           int(info["n_training_samples"]))

    def save(self, trainer, stream: ActivationStream):
        """Write sae-lens' checkpoint to a new step dir, commit it by replacing ``resume.json`` atomically, then
        drop the older step dirs: a kill at any point leaves the previous checkpoint whole."""
        name = f"step-{trainer.n_training_steps:08d}"
        shutil.rmtree(self.root / name, ignore_errors=True)
        trainer.save_checkpoint(checkpoint_name=name, base_path=self.root)
        info = {"checkpoint": name, "texts_consumed": stream.position, "n_training_steps": trainer.n_training_steps,
                "n_training_samples": trainer.n_training_samples, "config": self.settings}
        tmp = self.root / (RESUME_FILE + ".tmp")
        tmp.write_text(json.dumps(info, indent=2, sort_keys=True))
        os.replace(tmp, self.root / RESUME_FILE)
        for old in self.root.glob("step-*"):
            if old.name != name:
                shutil.rmtree(old, ignore_errors=True)

    def remove(self):
        shutil.rmtree(self.root, ignore_errors=True)


def fit(config: TrainSAEConfig, provider: MixingBuffer, stream: ActivationStream, d_in: int,
        checkpoint: TrainingCheckpoint | None = None, resume: ResumePoint | None = None):
    """Run sae-lens' ``SAETrainer`` over the buffer's batches (from ``resume`` if given, checkpointing every
    ``config.checkpoint_every`` steps); return the trainer with the final SAE, scaling folded in."""
    from sae_lens import SAETrainer

    trainer_cfg = trainer_config(config)
    trainer = SAETrainer(cfg=trainer_cfg, sae=training_sae(config, d_in, config.device), data_provider=provider)
    if resume is not None:
        # sae-lens' own resume seams; the scaling factor comes back with the trainer state, never re-estimated.
        trainer.load_trainer_state(resume.path)
        trainer.sae.load_weights_from_checkpoint(resume.path)
        logger.info("train-sae: resumed from %s at step %d/%d (%d tokens, %d texts consumed); the mixing buffer "
                    "starts empty", resume.path, trainer.n_training_steps, trainer_cfg.total_training_steps,
                    trainer.n_training_samples, resume.texts_consumed)
    elif config.normalize_activations == "expected_average_only_in":
        trainer.activation_scaler.estimate_scaling_factor(
            d_in=d_in, data_provider=provider, n_batches_for_norm_estimate=trainer_cfg.n_batches_for_norm_estimate)
    _train_loop(trainer, config, stream, checkpoint)
    if trainer.activation_scaler.scaling_factor is not None:
        trainer.sae.fold_activation_norm_scaling_factor(trainer.activation_scaler.scaling_factor)
        trainer.activation_scaler.scaling_factor = None
    trainer.set_final_sae_metadata()
    return trainer


def _train_loop(trainer, config: TrainSAEConfig, stream: ActivationStream, checkpoint: TrainingCheckpoint | None):
    """The loop of ``SAETrainer.fit()``, through its public seams, so progress can show EV/L0 as it trains."""
    from tqdm.auto import tqdm

    total = trainer.cfg.total_training_samples
    pbar = tqdm(total=total, initial=trainer.n_training_samples, desc="train-sae", unit="tok", file=sys.stderr,
                mininterval=5.0)
    ev_running = None
    while trainer.n_training_samples < total:
        trainer.maybe_reset_sparsity()
        out = trainer.step(next(trainer.data_provider))
        trainer.n_training_steps += 1
        with torch.no_grad():
            err = ((out.sae_in - out.sae_out) ** 2).sum()
            var = ((out.sae_in - out.sae_in.mean(0)) ** 2).sum()
            ev = float(1 - err / var.clamp_min(1e-12))
            ev_running = ev if ev_running is None else 0.95 * ev_running + 0.05 * ev
            l0 = float((out.feature_acts != 0).float().sum(-1).mean())
        pbar.update(config.train_batch_size)
        pbar.set_postfix(ev=f"{ev_running:.3f}", l0=f"{l0:.1f}", loss=f"{float(out.loss.detach()):.4g}", refresh=False)
        step = trainer.n_training_steps
        if step % 50 == 0:
            logger.info("step %d/%d tokens %d ev %.4f l0 %.1f dead(window) %d", step, trainer.cfg.total_training_steps,
                        trainer.n_training_samples, ev_running, l0, int(trainer.dead_neurons.sum()))
        if checkpoint and config.checkpoint_every and step % config.checkpoint_every == 0 \
                and trainer.n_training_samples < total:
            checkpoint.save(trainer, stream)
    pbar.close()
