"""``summary.md``: the headline numbers of a report's tidy table, with their intervals.

Reads only the table ``modularity.report`` gathers; each analysis writes its own section
(``Analysis.summary``), so it summarises ``make run`` and any sweep alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from modularity.analyses.base import analysis_class


def write_summary(
    frame: pd.DataFrame, out: Path, failures: Mapping[str, str], seconds: float, title: str
) -> Path:
    """Write ``out/summary.md`` from the tidy table and link every figure under ``out``."""
    lines = [f"# {title}", "", f"This invocation: {seconds / 60:.1f} min.", ""]
    failures = dict(failures)
    for model, rows in frame.groupby("model", sort=True):
        lines += [f"## {model}", ""]
        for name, analysis_rows in rows.groupby("analysis", sort=False):
            try:
                section = analysis_class(name).summary(analysis_rows)
            except Exception as err:  # noqa: BLE001 - one plug-in must not stop the others
                failures[f"summary of {name} ({model})"] = f"{type(err).__name__}: {err}"
                continue
            lines += [*section, ""] if section else []
    lines += ["## Figures", ""]
    lines += [f"![{p.stem}]({p.name})" for p in sorted(out.glob("*.png"))]
    runs = sorted(p for p in out.rglob("*.png") if p.parent != out and "prune" not in p.parts)
    lines += ["", "Per analysis:", ""]
    lines += [f"- [{p.relative_to(out)}]({p.relative_to(out)})" for p in runs]
    lines += ["", "Tidy table of every run: [report.csv](report.csv)."]
    if failures:
        lines += ["", "## Steps that failed", ""]
        lines += [f"- `{where}`: {why}" for where, why in failures.items()]
    path = out / "summary.md"
    path.write_text("\n".join(lines) + "\n")
    return path
