"""``python -m modularity.report <run or multirun dir>``: one tidy table and the figures.

Every run below the given directory wrote its rows to ``results.csv``
(``modularity.analyses.base.Row``); they are read as they are, with every key the run
overrode (``.hydra/overrides.yaml``) as a column, so runs that differ in a swept key never
pool. Written: ``report.csv``, ``report.parquet``, and each analysis's figures across runs
(``Analysis.figures``: e.g. ``drop_vs_fraction.png`` for pruning sweeps, overlap heatmaps,
``trained_vs_random_cdf.png``, ``alignment_by_depth.png``, ``dynamics_<model>.png``).

Unreadable result files, files that no longer match the checksum their run recorded
(:mod:`modularity.infra.artefacts`), and an analysis whose figures fail are named and skipped (exit
status 1); a directory without results is reported as such, and nothing is written into it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from modularity.analyses.base import (
    RESULTS,
    ROW_COLUMNS,
    SETTING_COLUMNS,
    analysis_class,
    import_recorded_analysis,
)
from modularity.errors import DamagedFileError, ModularityError
from modularity.infra.artefacts import verify_run_dir, writable_directory
from modularity.infra.optional import parquet_engine
from modularity.infra.outputs import write_csv, write_parquet
from modularity.infra.tidy import NUMERIC, read_results


def gather(root: Path) -> tuple[pd.DataFrame, list[str]]:
    """The tidy table of every run under ``root``, and the result files that could not be
    read (each named with why)."""
    frames, bad = [], []
    for path in sorted(root.rglob(RESULTS)):
        import_recorded_analysis(path.parent)
        try:
            verify_run_dir(path.parent, [RESULTS])
            frames.append(read_results(path))
        except DamagedFileError as err:
            bad.append(str(err))
        except (OSError, ValueError, pd.errors.ParserError) as err:
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            bad.append(f"unreadable results {path}: {reason}")
    if not frames:
        return pd.DataFrame(columns=[*SETTING_COLUMNS, *ROW_COLUMNS]), bad
    frame = pd.concat(frames, ignore_index=True)
    for column in frame.columns.difference(NUMERIC):
        frame[column] = frame[column].fillna("").astype(str)
    return frame, bad


def report(root: Path, out: Path | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Write ``report.csv``/``.parquet`` and the figures into ``out`` (default: ``root``),
    unless there is nothing to report. Returns the table and the unreadable files."""
    parquet_engine()
    frame, bad = gather(root)
    if frame.empty:
        return frame, bad
    out = writable_directory(out or root, "report directory")
    write_csv(out / "report.csv", frame, index=False)
    write_parquet(out / "report.parquet", frame)
    for name, rows in frame.groupby("analysis"):
        try:
            analysis_class(name).figures(rows, out)
        except Exception as err:  # noqa: BLE001 - one plug-in's figure must not stop the rest
            bad.append(f"figures of analysis {name!r}: {type(err).__name__}: {err}")
    return frame, bad


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="a run or multirun directory")
    parser.add_argument("--out", type=Path, default=None, help="where to write (default: root)")
    args = parser.parse_args(argv)
    if not args.root.is_dir():
        sys.exit(f"error: {args.root} is not a directory")
    try:
        frame, bad = report(args.root, args.out)
    except ModularityError as err:
        sys.exit(f"error: {err}")
    for line in bad:
        print(f"warning: skipped {line}", file=sys.stderr)
    if frame.empty:
        sys.exit(f"error: no run results ({RESULTS}) under {args.root}; nothing to report")
    print(f"{len(frame)} rows from {args.root} -> {(args.out or args.root) / 'report.csv'}")
    if bad:
        sys.exit(1)


if __name__ == "__main__":
    main()
