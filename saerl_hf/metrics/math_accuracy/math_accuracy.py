"""Math accuracy: final-answer extraction plus math-verify equivalence, each item bounded in time."""

# evaluate scans this script's imports: keep one import per line.
import datasets  # noqa: I001
import evaluate

from saerl_hf.answers import FAMILIES
from saerl_hf.answers import is_correct

_DESCRIPTION = """
Accuracy of model outputs against gold final answers on math benchmarks (MATH-500, GSM8K, ...).
The final answer is extracted the way each benchmark expects (last \\boxed{}, '####', 'The answer is',
'Answer:', else the last number) and compared with math-verify (LaTeX, fractions vs decimals,
percentages, units, \\text{}, thousands separators, intervals, sets). An item that takes longer than
`timeout_s` to check, an empty or missing output and a missing gold answer score 0.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): model outputs (full completions or bare answers). None scores 0.
    references (list of str): gold final answers (e.g. the `answer` column of saerl_hf.data). None/"" scores 0.
    families (str or list of str, optional): "elementary" (GSM8K, MAWPS, SVAMP, ASDiv: answer after
        'Answer:'/'####', else last number) or "competition" (default: last \\boxed{}); one per item or one for all.
    return_verdicts (bool, optional): also return the per-item list of booleans. Default False.
    timeout_s (float, optional): seconds allowed per item before it scores 0. Default 5.0.
Returns:
    accuracy (float): fraction of correct items (0.0 when there are none).
    verdicts (list of bool): only with return_verdicts=True.
Examples:
    >>> metric = evaluate.load(MATH_ACCURACY_PATH)
    >>> metric.compute(predictions=["so \\\\boxed{\\\\frac12}"], references=["0.5"])
    {'accuracy': 1.0}
"""

_CITATION = """
@misc{math-verify,
  title = {Math-Verify: a robust mathematical expression evaluation system},
  author = {Kydl{\\'i}{\\v{c}}ek, Hynek and Hugging Face},
  year = {2025},
  url = {https://github.com/huggingface/Math-Verify}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MathAccuracy(evaluate.Metric):
    """The project's accuracy metric; the scoring itself lives in saerl_hf.answers so rewards agree with it."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
            reference_urls=["https://github.com/huggingface/Math-Verify"],
        )

    def _compute(self, predictions, references, families=None, return_verdicts=False, timeout_s=5.0):
        if families is None or isinstance(families, str):
            families = [families] * len(predictions)
        families = list(families)
        if len(families) != len(predictions):
            raise ValueError(
                f"math_accuracy: got {len(families)} families for {len(predictions)} predictions; "
                "pass one family per prediction or a single string for all."
            )
        for i, family in enumerate(families):
            if family is not None and family not in FAMILIES:
                raise ValueError(f"math_accuracy: families[{i}]={family!r}; use one of {FAMILIES} or None.")
        verdicts = [
            is_correct(prediction, reference, family, timeout_s=timeout_s)
            for prediction, reference, family in zip(predictions, references, families)
        ]
        result = {"accuracy": sum(verdicts) / len(verdicts) if verdicts else 0.0}
        if return_verdicts:
            result["verdicts"] = verdicts
        return result
