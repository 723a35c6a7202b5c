"""``CurriculumGRPOTrainer``: TRL's ``GRPOTrainer`` with the SAERL train samplers of :mod:`saerl_hf.samplers`.

It swaps them in through ``_get_train_sampler`` (TRL's override point), feeds the adaptive sampler from an
:class:`~saerl_hf.samplers.AdaptiveCurriculumCallback`, and writes the sampler state as JSON into each
checkpoint so that a resumed run sees exactly the prompts an uninterrupted run would.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np
from torch.utils.data import Sampler
from trl import GRPOTrainer

from saerl_hf.curriculum import RANK_COLUMN, CurriculumError, fit_to_geometry, validate_alignment
from saerl_hf.samplers import (
    SAMPLER_STATE_FILE,
    SAMPLERS,
    AdaptiveCurriculumCallback,
    AdaptiveDifficultySampler,
    CurriculumRepeatSampler,
)


class CurriculumGRPOTrainer(GRPOTrainer):
    """``GRPOTrainer`` whose train sampler follows the SAERL order (or the adaptive target).

    ``sampler``: ``"curriculum"`` (follow ``curriculum_rank``), ``"adaptive"`` (moving difficulty target) or
    ``"default"`` (TRL's own ``RepeatSampler``: vanilla GRPO). ``sampler_kwargs`` go to the sampler
    (``epoch_order``, ``num_bands`` / ``target``, ``eta``, ``alpha``, ``beta``). ``adaptive_reward_key`` is the
    TRL metric the adaptive target follows (``"reward"`` = weighted sum; e.g. ``"rewards/correctness_reward/mean"``).
    """

    def __init__(
        self,
        *args,
        sampler: str = "curriculum",
        sampler_kwargs: dict | None = None,
        adaptive_reward_key: str = "reward",
        **kwargs,
    ):
        if sampler not in SAMPLERS:
            raise CurriculumError(f"sampler must be one of {SAMPLERS}, got '{sampler}'")
        self.sampler_name = sampler
        self.sampler_kwargs = dict(sampler_kwargs or {})
        self.adaptive_reward_key = adaptive_reward_key
        self.curriculum_sampler = None
        self._pending_sampler_state: dict | None = None
        super().__init__(*args, **kwargs)
        cols = getattr(self.train_dataset, "column_names", None) or []
        if sampler == "curriculum" and RANK_COLUMN not in cols:
            raise CurriculumError(
                f"sampler='curriculum' needs a '{RANK_COLUMN}' column in the train dataset (columns: {', '.join(cols)}). "
                f"Fix: order it with saerl_hf.curriculum.add_curriculum_rank / saerl-hf curate, or use sampler='default'."
            )
        self.adaptive_callback = None
        if sampler == "adaptive":
            if self.args.dataloader_num_workers:
                raise CurriculumError(
                    "the adaptive sampler needs dataloader_num_workers=0 (workers prefetch batches before the "
                    "rewards that choose them are known). Fix: set dataloader_num_workers: 0."
                )
            self.adaptive_callback = AdaptiveCurriculumCallback()
            self.add_callback(self.adaptive_callback)
        if sampler == "curriculum" and self.train_dataset is not None:
            # another batch geometry than the order was built for: rebuild it for this run's B (logged)
            self.train_dataset = fit_to_geometry(self.train_dataset, self._prompts_per_batch())
            # warns about a dropped tail; the sampler follows curriculum_rank, so row order is free
            validate_alignment(self.train_dataset, self._prompts_per_batch(), zero_patch=False)

    def _prompts_per_batch(self) -> int:
        return self.args.generation_batch_size // self.num_generations

    def _rounds_ahead(self) -> int:
        """How many generation rounds the dataloader can run ahead of the rewards (sets the adaptive lag)."""
        # At optimizer step k the trainer fetches its GA micro-batches plus accelerate's one-batch look-ahead,
        # while rewards are known only for rounds generated before step k: the gap is ceil((GA + 1) / ge).
        generate_every = self.args.steps_per_generation * self.num_iterations
        return max(1, math.ceil((self.args.gradient_accumulation_steps + 1) / generate_every))

    def _get_train_sampler(self, dataset=None) -> Sampler:
        if dataset is None:
            dataset = self.train_dataset
        if self.sampler_name == "default":
            return super()._get_train_sampler(dataset)
        common = dict(
            data_source=dataset,
            mini_repeat_count=self.num_generations,
            batch_size=self._prompts_per_batch(),
            repeat_count=self.num_iterations * self.args.steps_per_generation,
            seed=self.args.seed,
        )
        if self.curriculum_sampler is not None and self.curriculum_sampler.data_source is dataset:
            return self.curriculum_sampler
        if self.sampler_name == "curriculum":
            sampler = CurriculumRepeatSampler(**common, **self.sampler_kwargs)
        else:
            kwargs = {"lag": self._rounds_ahead(), **self.sampler_kwargs}
            sampler = AdaptiveDifficultySampler(**common, **kwargs)
            self.adaptive_callback.sampler = sampler
            if self._pending_sampler_state is not None:
                sampler.load_state_dict(self._pending_sampler_state)
                self._pending_sampler_state = None
        self.curriculum_sampler = sampler
        return sampler

    def _generate_and_score_completions(self, inputs):
        training = self.model.training
        if training and inputs and "difficulty" in inputs[0]:
            values = [x["difficulty"] for x in inputs if isinstance(x.get("difficulty"), (int, float))]
            if values:
                self._metrics["train"]["curriculum/difficulty"].append(float(np.mean(values)))
        output = super()._generate_and_score_completions(inputs)
        if training and self.adaptive_callback is not None:
            generate_every = self.args.steps_per_generation * self.num_iterations
            ga = self.args.gradient_accumulation_steps
            round_index = (self.state.global_step * ga + self._step % ga) // generate_every
            values = self._metrics["train"].get(self.adaptive_reward_key)
            if not values:
                raise CurriculumError(
                    f"adaptive_reward_key '{self.adaptive_reward_key}' is not a TRL train metric. Fix: use 'reward' "
                    f"or 'rewards/<reward_func_name>/mean'."
                )
            self.adaptive_callback.record(round_index, values[-1])
            sampler = self.adaptive_callback.sampler
            if sampler is not None:
                self._metrics["train"]["curriculum/target"].append(sampler.target_for(round_index))
        return output

    def _save_checkpoint(self, model, trial):
        from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

        super()._save_checkpoint(model, trial)
        sampler = self.curriculum_sampler
        if isinstance(sampler, AdaptiveDifficultySampler) and self.args.should_save:
            if self.adaptive_callback is not None:
                self.adaptive_callback.flush()
            out = os.path.join(self._get_output_dir(trial=trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
            if os.path.isdir(out):
                with open(os.path.join(out, SAMPLER_STATE_FILE), "w") as fh:
                    json.dump(sampler.state_dict(), fh, indent=1)

    def train(self, resume_from_checkpoint=None, *args, **kwargs):
        if resume_from_checkpoint is not None and resume_from_checkpoint is not False and self.sampler_name == "adaptive":
            path = resume_from_checkpoint
            if path is True:
                from transformers.trainer_utils import get_last_checkpoint

                path = get_last_checkpoint(self.args.output_dir)
                if path is None:
                    raise ValueError(f"No valid checkpoint found in output directory ({self.args.output_dir})")
            state_file = os.path.join(path, SAMPLER_STATE_FILE)
            if not os.path.isfile(state_file):
                raise CurriculumError(
                    f"{state_file} is missing: this checkpoint was not written by an adaptive-sampler run, so the "
                    f"prompt sequence cannot be resumed exactly. Fix: resume from a checkpoint of the same run."
                )
            with open(state_file) as fh:
                self._pending_sampler_state = json.load(fh)
            self.curriculum_sampler = None  # rebuild with the loaded state
            resume_from_checkpoint = path
        return super().train(resume_from_checkpoint, *args, **kwargs)
