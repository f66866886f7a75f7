"""``python -m modularity.report <run or multirun dir>``: one tidy table and the standard figures.

Every run directory below the given one is read (selective pruning ``metrics.json``,
overlap ``overlap_table.csv``, ``set_sizes.csv`` and ``trained_vs_random.csv``, MoEfication
``alignment.csv``) into a long table with columns model, task, layer, fraction, metric,
value, written as ``report.csv`` and ``report.parquet``, plus figures:

- ``drop_vs_fraction.png``: relative top-1 drop of task and reference against prune fraction;
- ``overlap_<model>.png``: whole-model Jaccard heatmap of each overlap run;
- ``trained_vs_random_cdf.png``: distribution of trained vs random-twin Jaccard;
- ``alignment_by_depth.png``: expert alignment z-score by layer depth, if MoEfication ran.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from modularity.outputs import plot_heatmap, plt

COLUMNS = ["model", "task", "layer", "fraction", "metric", "value"]


def _run_config(run_dir: Path) -> dict:
    path = run_dir / ".hydra" / "config.yaml"
    return OmegaConf.to_container(OmegaConf.load(path)) if path.exists() else {}


def _prune_rows(path: Path) -> list[dict]:
    result = json.loads(path.read_text())
    base = {
        "model": result["model"],
        "task": result["task"],
        "layer": "all",
        "fraction": result["fraction"],
    }
    rows = [{**base, "metric": "selectivity", "value": result["selectivity"]}]
    for stage in ("before", "after", "drop"):
        for side, metrics in result[stage].items():
            rows += [
                {**base, "metric": f"{side}/{stage}/{k}", "value": v} for k, v in metrics.items()
            ]
    return rows


def _model_and_fraction(run_dir: Path) -> tuple[str, float]:
    run = _run_config(run_dir)
    fraction = run.get("selection", {}).get("fraction", np.nan)
    model = run.get("model", {}).get("name", "?") if run.get("model") else "?"
    return model, fraction


def _overlap_rows(path: Path) -> list[dict]:
    model, fraction = _model_and_fraction(path.parent)
    table = pd.read_csv(path, dtype={"scope": str})
    return [
        {
            "model": model,
            "task": f"{r.task_a}|{r.task_b}",
            "layer": r.scope,
            "fraction": fraction,
            "metric": f"overlap/{r.metric}",
            "value": r.value,
        }
        for r in table.itertuples()
    ]


def _set_size_rows(path: Path) -> list[dict]:
    model, fraction = _model_and_fraction(path.parent)
    table = pd.read_csv(path, dtype={"layer": str})
    return [
        {
            "model": model,
            "task": r.task,
            "layer": r.layer,
            "fraction": fraction,
            "metric": "set_share",
            "value": r.share,
        }
        for r in table.itertuples()
    ]


def _random_rows(path: Path) -> list[dict]:
    model, fraction = _model_and_fraction(path.parent)
    table = pd.read_csv(path)
    return [
        {
            "model": model,
            "task": r["task"],
            "layer": "all",
            "fraction": fraction,
            "metric": f"trained_vs_random/{metric}",
            "value": r[metric],
        }
        for _, r in table.iterrows()
        for metric in ("jaccard", "expected_jaccard", "z", "p_value")
    ]


def _alignment_rows(path: Path) -> list[dict]:
    table = pd.read_csv(path)
    return [
        {
            "model": r["model"],
            "task": r["task"],
            "layer": str(r["layer"]),
            "fraction": r["fraction"],
            "metric": f"alignment/{r['clustering']}/{r['statistic']}_z",
            "value": r["z"],
        }
        for _, r in table.iterrows()
    ]


READERS = {
    "metrics.json": _prune_rows,
    "overlap_table.csv": _overlap_rows,
    "set_sizes.csv": _set_size_rows,
    "trained_vs_random.csv": _random_rows,
    "alignment.csv": _alignment_rows,
}


def gather(root: Path) -> pd.DataFrame:
    """The tidy table of every run under ``root``."""
    rows: list[dict] = []
    for name, reader in READERS.items():
        for path in sorted(root.rglob(name)):
            rows += reader(path)
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame["layer"] = frame["layer"].astype(str)
    return frame


def plot_drop_vs_fraction(frame: pd.DataFrame, path: Path) -> Path | None:
    """One panel per model: relative top-1 drop against prune fraction, each task (solid)
    beside its reference (dashed, same colour), and the means over tasks in black."""
    drops = frame[frame.metric.isin(["task/drop/top1", "reference/drop/top1"])]
    if drops.empty:
        return None
    models = sorted(drops.model.unique())
    fig, axes = plt.subplots(
        1, len(models), figsize=(4.2 * len(models), 3.8), squeeze=False, sharey=True
    )
    for ax, model in zip(axes[0], models):
        rows = drops[drops.model == model]
        curves = rows.pivot_table(index="fraction", columns=["metric", "task"], values="value")
        colours = plt.cm.tab10(np.linspace(0, 1, 10))
        for i, task in enumerate(sorted(rows.task.unique())):
            colour = colours[i % 10]
            ax.plot(
                curves.index, curves["task/drop/top1"][task], "-", color=colour, lw=1, label=task
            )
            ax.plot(curves.index, curves["reference/drop/top1"][task], "--", color=colour, lw=0.8)
        ax.plot(curves.index, curves["task/drop/top1"].mean(axis=1), "-o", color="k", lw=2.2)
        ax.plot(curves.index, curves["reference/drop/top1"].mean(axis=1), "--o", color="k", lw=2.2)
        ax.set_xscale("log")
        ax.set_xticks(curves.index, [f"{f:g}" for f in curves.index])
        ax.minorticks_off()
        ax.axhline(0, color="grey", lw=0.6)
        ax.set_title(model, fontsize=10)
        ax.set_xlabel("prune fraction (per layer)")
        ax.legend(fontsize=6, ncol=2, loc="upper left")
    axes[0][0].set_ylabel("relative top-1 drop")
    fig.suptitle("selective pruning: task (solid) vs reference (dashed); black: mean", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_overlaps(frame: pd.DataFrame, out: Path) -> list[Path]:
    jaccard = frame[(frame.metric == "overlap/jaccard") & (frame.layer == "all")]
    paths = []
    for (model, fraction), group in jaccard.groupby(["model", "fraction"]):
        pairs = group.task.str.split("|", expand=True)
        matrix = group.assign(a=pairs[0], b=pairs[1]).pivot_table(
            index="a", columns="b", values="value"
        )
        path = out / f"overlap_{model}_{fraction:g}.png"
        plot_heatmap(
            path,
            list(matrix.index),
            matrix.values,
            f"{model}, top {fraction:g}: Jaccard",
            "Jaccard",
        )
        paths.append(path)
    return paths


def plot_random_cdf(frame: pd.DataFrame, path: Path) -> Path | None:
    rows = frame[
        frame.metric.isin(["trained_vs_random/jaccard", "trained_vs_random/expected_jaccard"])
    ]
    if rows.empty:
        return None
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for metric, label in (
        ("trained_vs_random/jaccard", "trained vs random twin"),
        ("trained_vs_random/expected_jaccard", "chance (same sizes)"),
    ):
        values = np.sort(rows[rows.metric == metric].value.to_numpy())
        ax.step(values, np.arange(1, len(values) + 1) / len(values), where="post", label=label)
    ax.set_xlabel("Jaccard overlap of task neuron sets")
    ax.set_ylabel("fraction of tasks")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_alignment(frame: pd.DataFrame, path: Path) -> Path | None:
    rows = frame[
        frame.metric.str.startswith("alignment/") & frame.metric.str.endswith("topk_fraction_z")
    ]
    if rows.empty:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for (model, task, metric), group in rows.groupby(["model", "task", "metric"]):
        clustering = metric.split("/")[1]
        group = group.assign(depth=group.layer.astype(int)).sort_values("depth")
        depth = group.depth / max(group.depth.max(), 1)
        ax.plot(
            depth,
            group.value,
            "-o" if clustering == "balanced" else ":",
            label=f"{model} {task} {clustering}",
        )
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel("relative layer depth")
    ax.set_ylabel("alignment z (top-expert share vs random sets)")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def report(root: Path, out: Path | None = None) -> pd.DataFrame:
    """Write ``report.csv``/``.parquet`` and the figures into ``out`` (default: ``root``)."""
    out = out or root
    out.mkdir(parents=True, exist_ok=True)
    frame = gather(root)
    frame.to_csv(out / "report.csv", index=False)
    frame.to_parquet(out / "report.parquet", index=False)
    plot_drop_vs_fraction(frame, out / "drop_vs_fraction.png")
    plot_overlaps(frame, out)
    plot_random_cdf(frame, out / "trained_vs_random_cdf.png")
    plot_alignment(frame, out / "alignment_by_depth.png")
    return frame


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="a run or multirun directory")
    parser.add_argument("--out", type=Path, default=None, help="where to write (default: root)")
    args = parser.parse_args(argv)
    if not args.root.is_dir():
        sys.exit(f"error: {args.root} is not a directory")
    frame = report(args.root, args.out)
    if frame.empty:
        sys.exit(f"error: no run results (metrics.json, overlap_table.csv, ...) under {args.root}")
    print(f"{len(frame)} rows from {args.root} -> {(args.out or args.root) / 'report.csv'}")


if __name__ == "__main__":
    main()
