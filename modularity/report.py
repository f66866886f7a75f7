"""``python -m modularity.report <run or multirun dir>``: one tidy table and the standard figures.

Every run below the given directory wrote its rows to ``results.csv`` (see
``modularity.analyses.base.Row``); they are read as they are, whatever analysis made them,
with every key the run overrode (``.hydra/overrides.yaml``) as a column, so runs that
differ in a swept key never pool. Written: ``report.csv`` and ``report.parquet``, and

- ``drop_vs_fraction.png``: top-1 drop (pp, 95% intervals) of task and reference against the
  prune fraction, one panel per model and setting;
- ``overlap_<model>_<fraction>.png``: whole-model Jaccard heatmap of each overlap run;
- ``trained_vs_random_cdf.png``: index-by-index overlap of trained and other models vs chance;
- ``alignment_by_depth.png``: MoEfication alignment by depth third, per model and clustering.

Unreadable result files are named and skipped (status 1); a directory without results is
reported as such, and nothing is written into it.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from modularity.analyses.base import RESULTS, ROW_COLUMNS
from modularity.figures import alignment_panels, plot_heatmap, plt, save

log = logging.getLogger("modularity.report")
# Overridden keys that the settings columns already hold.
SETTING_OF_OVERRIDE = {
    "task": "task",
    "model": "model",
    "selection.fraction": "fraction",
    "selection.scope": "scope",
    "scoring": "scorer",
    "scoring.scorer": "scorer",
    "ablation.mode": "ablation",
    "layers": "layers",
    "analysis": "analysis",
    "model.checkpoint": "checkpoint",
    "data.exclude_from_reference": "reference_excludes",
}
SETTINGS = ["model", "checkpoint", "init", "analysis", "fraction", "scope", "scorer", "ablation",
            "layers", "reference_excludes"]  # fmt: skip


def overrides_of(run_dir: Path) -> dict[str, str]:
    """``key -> value`` of the overrides a run was launched with (Hydra writes them)."""
    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return {}
    out = {}
    for item in OmegaConf.to_container(OmegaConf.load(path)) or []:
        key, _, value = str(item).lstrip("+~").partition("=")
        if key not in SETTING_OF_OVERRIDE and not key.startswith("hydra"):
            out[key] = value
    return out


TEXT_COLUMNS = ["task", "measure", "variant", "partner", "layer", *SETTINGS]


def read_results(path: Path) -> pd.DataFrame:
    text = {c: str for c in TEXT_COLUMNS if c != "fraction"}
    numeric = {c: ["", "nan", "NaN"] for c in ("value", "low", "high", "p_value", "n")}
    frame = pd.read_csv(path, dtype=text, keep_default_na=False, na_values=numeric)
    missing = [c for c in ROW_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"missing columns {missing}")
    frame["run"] = str(path.parent)
    for key, value in overrides_of(path.parent).items():
        frame[key] = value
    return frame


def gather(root: Path) -> tuple[pd.DataFrame, list[str]]:
    """The tidy table of every run under ``root``, and the result files that could not be
    read (each named with why)."""
    frames, bad = [], []
    for path in sorted(root.rglob(RESULTS)):
        try:
            frames.append(read_results(path))
        except (OSError, ValueError, pd.errors.ParserError) as err:
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            bad.append(f"{path}: {reason}")
    if not frames:
        return pd.DataFrame(columns=[*SETTINGS, *ROW_COLUMNS]), bad
    frame = pd.concat(frames, ignore_index=True)
    for column in frame.columns.difference(["value", "low", "high", "p_value", "n", "fraction"]):
        frame[column] = frame[column].fillna("").astype(str)
    return frame, bad


def swept_keys(frame: pd.DataFrame, exclude: tuple[str, ...] = ()) -> list[str]:
    """Setting and override columns whose value differs between runs."""
    candidates = [c for c in frame.columns if c not in ROW_COLUMNS and c != "run"]
    return [
        c for c in candidates
        if c not in exclude and frame[c].astype(str).nunique(dropna=False) > 1
    ]  # fmt: skip


def panels(frame: pd.DataFrame, exclude: tuple[str, ...]) -> list[tuple[str, pd.DataFrame]]:
    """One group per combination of swept keys other than ``exclude``: figures never pool
    runs that differ in a swept key."""
    keys = swept_keys(frame, exclude)
    if not keys:
        return [("", frame)]
    out = []
    for values, group in frame.groupby(keys, dropna=False, sort=True):
        values = values if isinstance(values, tuple) else (values,)
        out.append((", ".join(f"{k}={v}" for k, v in zip(keys, values)), group))
    return out


def plot_drop_vs_fraction(frame: pd.DataFrame, path: Path) -> Path | None:
    """Top-1 drop (pp) of each task (solid) and its reference (dashed) against the fraction,
    with 95% bands; black: the mean over tasks."""
    drops = frame[
        (frame.metric == "drop") & (frame.measure == "top1") & (frame.analysis == "prune")
    ]
    if drops.empty:
        return None
    groups = panels(drops, exclude=("task", "fraction", "analysis"))
    fig, axes = plt.subplots(1, len(groups), figsize=(4.4 * len(groups), 3.9), squeeze=False)
    for ax, (label, group) in zip(axes[0], groups):
        colours = plt.cm.tab10(np.linspace(0, 1, 10))
        for i, (task, rows) in enumerate(group.groupby("task")):
            for side, style in (("task", "-"), ("reference", "--")):
                line = rows[rows.variant == side].sort_values("fraction")
                colour = colours[i % 10]
                ax.plot(line.fraction, line.value, style, color=colour, lw=1,
                        label=task if side == "task" else None)  # fmt: skip
                ax.fill_between(line.fraction, line.low, line.high, color=colour, alpha=0.12)
        for side, style in (("task", "-o"), ("reference", "--o")):
            mean = group[group.variant == side].groupby("fraction").value.mean()
            ax.plot(mean.index, mean.values, style, color="k", lw=2)
        fractions = sorted(group.fraction.unique())
        ax.set_xscale("log")
        ax.set_xticks(fractions, [f"{f:g}" for f in fractions])
        ax.minorticks_off()
        ax.axhline(0, color="grey", lw=0.6)
        ax.set_title(f"{group.model.iloc[0]}" + (f"\n{label}" if label else ""), fontsize=9)
        ax.set_xlabel("prune fraction")
        ax.legend(fontsize=6, ncol=2, loc="upper left")
    axes[0][0].set_ylabel("top-1 drop (percentage points)")
    fig.suptitle("selective pruning: task (solid) vs reference (dashed), 95% intervals; "
                 "black: mean over tasks", fontsize=9)  # fmt: skip
    return save(fig, path)


def plot_overlaps(frame: pd.DataFrame, out: Path) -> list[Path]:
    """Whole-model Jaccard heatmap of each overlap run."""
    rows = frame[(frame.metric == "jaccard") & (frame.layer == "all") & (frame.partner != "")]
    paths: list[Path] = []
    for _, group in rows.groupby("run"):
        names = list(dict.fromkeys([*group.task, *group.partner]))
        matrix = group.pivot_table(index="task", columns="partner", values="value")
        matrix = matrix.reindex(index=names, columns=names)
        first = group.iloc[0]
        stem = f"overlap_{first.model}_{first.fraction:g}"
        taken = sum(p.stem.startswith(stem) for p in paths)  # runs differing in another key
        path = out / f"{stem}{f'_{taken}' if taken else ''}.png"
        title = f"{first.model}: Jaccard of task neuron sets (top {first.fraction:g})"
        paths.append(plot_heatmap(path, names, matrix.values, title, "Jaccard"))
    return paths


def plot_random_cdf(frame: pd.DataFrame, path: Path) -> Path | None:
    """Index-by-index Jaccard of trained vs other models, against chance."""
    rows = frame[frame.metric.isin(["index_jaccard", "expected_index_jaccard"])]
    if rows.empty:
        return None
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    for (model, kind), group in rows.groupby(["model", rows.partner.str.endswith("-init")]):
        for metric, style in (("index_jaccard", "-"), ("expected_index_jaccard", ":")):
            values = np.sort(group[group.metric == metric].value.to_numpy())
            which = "true init" if kind else "random twins"
            label = f"{model} vs {which}" + (" (chance)" if metric.startswith("expected") else "")
            ax.step(values, np.arange(1, len(values) + 1) / len(values), style, where="post",
                    label=label)  # fmt: skip
    ax.set_xlabel("Jaccard of a task's neuron sets (same neuron indices)")
    ax.set_ylabel("fraction of tasks")
    ax.legend(fontsize=6)
    return save(fig, path)


def plot_alignment(frame: pd.DataFrame, path: Path) -> Path | None:
    """Alignment z (top-expert share) by depth third, per model and clustering."""
    rows = frame[(frame.metric == "alignment_z_by_depth") & (frame.measure == "topk_fraction")]
    if rows.empty:
        return None
    groups = panels(rows, exclude=("analysis",))
    fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 3.5), squeeze=False)
    for ax, (label, group) in zip(axes[0], groups):
        alignment_panels([ax], group, ["topk_fraction"])
        ax.set_title(f"{group.model.iloc[0]}" + (f"\n{label}" if label else ""), fontsize=9)
    fig.suptitle("experts vs task neurons: mean z over tasks, 95% intervals", fontsize=9)
    return save(fig, path)


def report(root: Path, out: Path | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Write ``report.csv``/``.parquet`` and the figures into ``out`` (default: ``root``),
    unless there is nothing to report. Returns the table and the unreadable files."""
    frame, bad = gather(root)
    if frame.empty:
        return frame, bad
    out = out or root
    out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out / "report.csv", index=False)
    frame.to_parquet(out / "report.parquet", index=False)
    plot_drop_vs_fraction(frame, out / "drop_vs_fraction.png")
    plot_overlaps(frame, out)
    plot_random_cdf(frame, out / "trained_vs_random_cdf.png")
    plot_alignment(frame, out / "alignment_by_depth.png")
    return frame, bad


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="a run or multirun directory")
    parser.add_argument("--out", type=Path, default=None, help="where to write (default: root)")
    args = parser.parse_args(argv)
    if not args.root.is_dir():
        sys.exit(f"error: {args.root} is not a directory")
    frame, bad = report(args.root, args.out)
    for line in bad:
        print(f"warning: skipped unreadable results {line}", file=sys.stderr)
    if frame.empty:
        sys.exit(f"error: no run results ({RESULTS}) under {args.root}; nothing to report")
    print(f"{len(frame)} rows from {args.root} -> {(args.out or args.root) / 'report.csv'}")
    if bad:
        sys.exit(1)


if __name__ == "__main__":
    main()
