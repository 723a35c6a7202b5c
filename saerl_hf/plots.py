"""Every figure of the project, in one place (matplotlib, Agg backend: no display needed).

Each function takes plain data (dicts/lists/arrays) and a path, writes a PNG and returns the path.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _save(fig, path) -> str:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return str(path)


# ----------------------------------------------------------------------------- signals (docs/signals.md)


def plot_difficulty_by_level(levels, predictions: dict, path, title: str = "Predicted difficulty by MATH level") -> str:
    """Box plots of each method's held-out prediction per true level (one panel per method)."""
    import numpy as np

    levels = np.asarray(levels)
    values = sorted(set(levels.tolist()))
    fig, axes = plt.subplots(1, len(predictions), figsize=(4.2 * len(predictions), 3.6), squeeze=False)
    for ax, (name, pred) in zip(axes[0], predictions.items()):
        pred = np.asarray(pred)
        ax.boxplot([pred[levels == v] for v in values], showfliers=False)
        ax.set_xticks(range(1, len(values) + 1), [f"{v:g}" for v in values])
        ax.set_xlabel("true level")
        ax.set_title(name, fontsize=10)
    axes[0][0].set_ylabel("predicted difficulty")
    fig.suptitle(title, fontsize=11)
    return _save(fig, path)


def plot_metric_bars(values: dict, path, ylabel: str, title: str, goal: float | None = None,
                     errors: dict | None = None) -> str:
    """One bar per method (optional symmetric/asymmetric error bars and a dashed goal line)."""
    import numpy as np

    names = list(values)
    fig, ax = plt.subplots(figsize=(max(4.5, 1.3 * len(names)), 3.6))
    heights = [values[n] for n in names]
    yerr = None
    if errors:
        lo = [max(0.0, values[n] - errors[n][0]) for n in names]
        hi = [max(0.0, errors[n][1] - values[n]) for n in names]
        yerr = np.array([lo, hi])
    bars = ax.bar(range(len(names)), heights, yerr=yerr, capsize=4, color="#4c72b0")
    for bar, h in zip(bars, heights):
        ax.text(bar.get_x() + bar.get_width() / 2, h, f"{h:.3f}", ha="center", va="bottom", fontsize=8)
    if goal is not None:
        ax.axhline(goal, color="#c44e52", linestyle="--", linewidth=1, label=f"goal {goal:g}")
        ax.legend(fontsize=8, loc="lower right")
    ax.set_xticks(range(len(names)), names, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=11)
    return _save(fig, path)


def plot_roc_curves(curves: dict, path, title: str = "Quality probe: held-out ROC") -> str:
    """``curves``: name -> (y_true, score). One ROC line per name, AUROC in the legend."""
    from sklearn.metrics import roc_auc_score, roc_curve

    fig, ax = plt.subplots(figsize=(4.4, 4.0))
    for name, (y, score) in curves.items():
        fpr, tpr, _ = roc_curve(y, score)
        ax.plot(fpr, tpr, label=f"{name} (AUROC {roc_auc_score(y, score):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("false positive rate (noisy kept)")
    ax.set_ylabel("true positive rate (clean kept)")
    ax.set_title(title, fontsize=11)
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)


def plot_cluster_subjects(clusters, subjects, path, title: str = "Clusters vs MATH subjects") -> str:
    """Heat map of P(subject | cluster): each row is a cluster, normalised to sum 1."""
    import numpy as np

    clusters, subjects = np.asarray(clusters), np.asarray(subjects)
    cluster_ids, subject_names = sorted(set(clusters.tolist())), sorted(set(subjects.tolist()))
    table = np.array([[np.sum((clusters == c) & (subjects == s)) for s in subject_names] for c in cluster_ids], float)
    sizes = table.sum(axis=1, keepdims=True)
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * len(subject_names), 1.2 + 0.32 * len(cluster_ids)))
    image = ax.imshow(table / np.maximum(sizes, 1), cmap="Blues", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(subject_names)), subject_names, rotation=35, ha="right", fontsize=8)
    ax.set_yticks(range(len(cluster_ids)), [f"{c} (n={int(n)})" for c, n in zip(cluster_ids, sizes.ravel())],
                  fontsize=7)
    ax.set_ylabel("cluster")
    fig.colorbar(image, ax=ax, fraction=0.04, label="share of cluster")
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


# ----------------------------------------------------------------------------- evaluation (saerl_hf.evaluation)


def plot_accuracy_per_benchmark(accuracy: dict, path, title: str = "Accuracy per benchmark",
                                counts: dict | None = None) -> str:
    """One bar per benchmark (accuracy in %), the item count under each name."""
    names = list(accuracy)
    values = [100 * float(accuracy[name]) for name in names]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(names) + 2), 3.6))
    bars = ax.bar(range(len(names)), values, color="tab:blue")
    for bar, value in zip(bars, values):
        ax.annotate(f"{value:.1f}", (bar.get_x() + bar.get_width() / 2, value), ha="center", va="bottom", fontsize=8)
    labels = [f"{n}\n(n={counts[n]})" if counts and n in counts else n for n in names]
    ax.set_xticks(range(len(names)), labels, fontsize=8)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, max(10.0, max(values, default=0) * 1.2))
    ax.set_title(title)
    return _save(fig, path)


def plot_accuracy_by_group(groups: dict, path, title: str, xlabel: str = "", counts: dict | None = None) -> str:
    """Accuracy (%) per group, e.g. MATH-500 level or subject, in the given order."""
    names = [str(name) for name in groups]
    values = [100 * float(value) for value in groups.values()]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.8 * len(names) + 2), 3.6))
    ax.bar(range(len(names)), values, color="tab:green")
    labels = [f"{n}\n(n={counts[k]})" if counts and k in counts else n for n, k in zip(names, groups)]
    ax.set_xticks(range(len(names)), labels, fontsize=7, rotation=30 if len(names) > 5 else 0)
    ax.set_ylabel("accuracy (%)")
    ax.set_xlabel(xlabel)
    ax.set_ylim(0, max(10.0, max(values, default=0) * 1.2))
    ax.set_title(title)
    return _save(fig, path)


def plot_comparison(runs: dict, path, title: str = "Accuracy by run") -> str:
    """Grouped bars: ``runs = {run name: {benchmark: accuracy}}`` (e.g. base vs vanilla GRPO vs SAERL)."""
    run_names = list(runs)
    benchmarks = list(dict.fromkeys(b for scores in runs.values() for b in scores))
    width = 0.8 / max(1, len(run_names))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.4 * len(benchmarks) + 2), 3.8))
    for r, run in enumerate(run_names):
        xs = [b + (r - (len(run_names) - 1) / 2) * width for b in range(len(benchmarks))]
        ys = [100 * float(runs[run].get(bench, float("nan"))) for bench in benchmarks]
        ax.bar(xs, ys, width=width, label=run)
    ax.set_xticks(range(len(benchmarks)), benchmarks, fontsize=8)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_learning_curves(curves: dict, path, title: str = "", labels: dict | None = None,
                         ylabel: str = "held-out accuracy (%)") -> str:
    """One line per arm: mean over seeds with a ±1 std band. ``curves[arm] = (steps, mean, std)``."""
    import numpy as np

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for arm, (steps, mean, std) in curves.items():
        if not steps:
            continue
        mean, std = 100 * np.asarray(mean), 100 * np.asarray(std)
        line = ax.plot(steps, mean, marker="o", label=(labels or {}).get(arm, arm))[0]
        ax.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.15)
    ax.set_xlabel("GRPO step")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)
