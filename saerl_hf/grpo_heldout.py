"""Held-out accuracy inside the GRPO loop: a TrainerCallback that scores a held-out slice every N steps."""

from __future__ import annotations

import json
import time
from pathlib import Path

from transformers import TrainerCallback

HISTORY_FILE = "heldout_history.json"  # in each checkpoint: the curve with solved ids survives a resume


class HeldOutEvalCallback(TrainerCallback):
    """Greedy accuracy on a held-out slice every N steps, logged through ``trainer.log`` (console,
    ``report_to`` backends and ``state.log_history``). Each process scores its shard; counts are summed."""

    def __init__(self, rows: list[dict], name: str, every: int, max_new_tokens: int, batch_size: int,
                 on_start: bool = True):
        self.rows, self.name, self.every = rows, name, int(every)
        self.max_new_tokens, self.batch_size, self.on_start = max_new_tokens, batch_size, on_start
        self.trainer = None
        self.history: list[dict] = []
        self.seconds_in_train = 0.0  # scoring time counted in train_runtime (everything before on_train_end)
        self._last_step = -1

    def evaluate(self, step: int) -> dict:
        import torch

        from saerl_hf.evaluation import evaluate_model

        trainer = self.trainer
        acc = trainer.accelerator
        shard = self.rows[acc.process_index :: acc.num_processes]
        model = acc.unwrap_model(trainer.model)
        was_training = model.training
        model.eval()
        start = time.perf_counter()
        correct, correct_ids, lengths = 0.0, [], []
        if shard:
            with torch.no_grad():
                res = evaluate_model(
                    model, trainer.processing_class, [self.name], datasets={self.name: shard},
                    max_new_tokens=self.max_new_tokens, batch_size=self.batch_size, progress=False, make_plots=False,
                )
            bench = res["benchmarks"][self.name]
            correct = bench["accuracy"] * bench["n_items"]
            items = res["items"][self.name]
            correct_ids = [item["id"] for item in items if item.get("verdicts") and item["verdicts"][0]]
            lengths = [n for item in items for n in item.get("new_tokens", [])]
        totals = acc.reduce(torch.tensor([correct, float(len(shard))], device=acc.device), reduction="sum")
        accuracy = float(totals[0] / max(totals[1], 1.0))
        if acc.num_processes > 1:
            from accelerate.utils import gather_object

            correct_ids, lengths = gather_object(correct_ids), gather_object(lengths)
        record = {f"heldout/{self.name}/accuracy": accuracy, f"heldout/{self.name}/n": int(totals[1]),
                  "heldout/seconds": round(time.perf_counter() - start, 2),
                  "heldout/mean_new_tokens": round(sum(lengths) / max(1, len(lengths)), 2)}
        # which items were solved: the paired (same items) standard error of a change needs them
        self.history.append({"step": step, **record, "correct_ids": sorted(correct_ids)})
        self._last_step = step
        # Logged while the model is still in eval mode: GRPOTrainer.log then merges its (empty) eval metrics
        # instead of taking the pending train metrics, which stay with the trainer's own step log.
        # CallbackHandler.on_log clears control.should_log; restore it so the step's own train log still happens.
        should_log = trainer.control.should_log
        trainer.log(dict(record))
        trainer.control.should_log = should_log
        if was_training:
            model.train()
        return record

    def on_save(self, args, state, control, **kwargs):
        """Keep the curve (with the solved ids) in the checkpoint just written, for a resumed run's summary."""
        path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if state.is_world_process_zero and path.is_dir():
            (path / HISTORY_FILE).write_text(json.dumps(self.history))
        return control

    def _restore(self, args, state) -> None:
        """A resumed run starts with the points scored before its checkpoint (log_history has no solved ids)."""
        path = Path(args.output_dir) / f"checkpoint-{state.global_step}" / HISTORY_FILE
        if path.is_file():
            self.history = json.loads(path.read_text())
        else:  # a checkpoint from before HISTORY_FILE: the accuracies survive in the trainer's log history
            key = f"heldout/{self.name}/accuracy"
            self.history = [{k: v for k, v in e.items() if k == "step" or k.startswith("heldout/")}
                            for e in state.log_history if key in e]
        if self.history:
            self._last_step = self.history[-1]["step"]

    def on_train_begin(self, args, state, control, **kwargs):
        if state.global_step > 0 and not self.history:
            self._restore(args, state)
        if self.on_start and state.global_step == 0 and self.rows:
            self.seconds_in_train += self.evaluate(0)["heldout/seconds"]
        return control

    def on_step_end(self, args, state, control, **kwargs):
        if self.every and state.global_step % self.every == 0:
            self.seconds_in_train += self.evaluate(state.global_step)["heldout/seconds"]
        return control

    def on_train_end(self, args, state, control, **kwargs):
        if self.rows and self._last_step != state.global_step:
            self.evaluate(state.global_step)
        return control
