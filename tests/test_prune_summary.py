"""The pruning summary and console table read the verdicts the rows carry: summaries
correct them by Holm over the tasks they count, the console says why an interval is
missing."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from modularity.algorithms.across_tasks import mean_over_tasks
from modularity.analyses.base import Row
from modularity.analyses.prune import Prune, console_summary
from modularity.infra.paths import CONF_DIR
from modularity.infra.tidy import lower_median
from modularity.verdicts import UNSTABLE


def task_rows(task: str, effect: float, se: float, p: float, p_null: float, stability: float):
    """The rows one run writes that the summary reads (top-1 only)."""
    where = {"task": task, "measure": "top1"}
    return [
        Row("before", 0.5, variant="task", n=40, **where),
        Row("after", 0.4, variant="task", n=40, **where),
        Row("before", 0.5, variant="reference", n=40, **where),
        Row("after", 0.5, variant="reference", n=40, **where),
        Row("drop", 10.0, variant="task", low=8.0, high=12.0, n=40, **where),
        Row("drop", 0.0, variant="reference", low=-1.0, high=1.0, n=40, **where),
        Row(
            "effect",
            effect,
            variant="task-reference",
            low=effect - 2 * se,
            high=effect + 2 * se,
            p_value=p,
            n=40,
            label="",
            **where,
        ),
        Row("null_margin", 1.0, variant="task-reference", p_value=p_null, n=40, **where),
        Row("standard_error", se, variant="task-reference", n=40, **where),
        Row("degrees_of_freedom", 30.0, variant="task-reference", n=40, **where),
        Row("stability", stability, task=task, label=UNSTABLE if stability < 0.7 else ""),
        Row("evaluate_tokens", 4096.0, task=task, variant="task"),
    ]


def frame(tasks: dict[str, tuple]) -> pd.DataFrame:
    rows = []
    for task, args in tasks.items():
        for row in task_rows(task, *args):
            rows.append({**dataclasses.asdict(row), "run": task, "fraction": 0.05, "model": "m"})
    return pd.DataFrame(rows)


def test_summary_corrects_verdicts_over_the_tasks():
    # raw p 0.04 and 0.03 are effects alone; with Holm over 3 tasks only 0.001 stays one
    rows = frame(
        {
            "a": (2.0, 0.9, 0.04, 0.5, 0.9),
            "b": (2.5, 1.0, 0.03, 0.5, 0.6),
            "c": (4.0, 1.0, 0.001, 0.9, 0.8),
        }
    )
    text = "\n".join(Prune.summary(rows))
    assert "Holm" in text and "corrected for the 3 tasks" in text
    lines = {line[2]: line for line in text.splitlines() if line.startswith(("| a", "| b", "| c"))}
    assert "| inconclusive |" in lines["a"] and "| effect |" in lines["c"]
    assert f"0.60 ({UNSTABLE})" in lines["b"]
    assert "| 1 of 3 | 0 of 3 | 0 of 3 | 2 of 3 | 1 |" in text  # effect, reverse, null, inc.


def test_nested_tasks_are_marked_and_left_out_of_the_mean_and_counts():
    rows = frame(
        {
            "fashion-tops": (6.0, 1.0, 0.001, 0.9, 0.9),
            "fashion-shirt": (8.0, 1.0, 0.001, 0.9, 0.9),
            "fashion-bag": (2.0, 1.0, 0.04, 0.5, 0.9),
        }
    )
    text = "\n".join(Prune.summary(rows))
    assert "| fashion-shirt (inside fashion-tops) |" in text
    assert "Left out as nested in another task (their images overlap): fashion-shirt" in text
    pooled = mean_over_tasks(np.array([6.0, 2.0]), np.array([1.0, 1.0]), np.array([30.0, 30.0]))
    mean, low, high, tau = pooled.value, pooled.low, pooled.high, pooled.tau
    # shirt not counted; tau = sqrt(8 - 1)
    assert f"| {mean:+.1f} [{low:+.1f}, {high:+.1f}] | {tau:.1f} | 2 of 2 |" in text


def test_console_says_why_there_is_no_interval():
    rows = [
        *task_rows("code", 5.0, float("nan"), float("nan"), float("nan"), 0.5),
        Row("collect_tokens", 2048.0, task="code", variant="task"),
    ]
    rows = [dataclasses.replace(r, n=2.0) if r.variant != "reference" else r for r in rows]
    rows = [
        dataclasses.replace(r, label="inconclusive") if r.metric == "effect" else r for r in rows
    ]
    text = console_summary("m", "code", "mix", rows)
    assert "+5.00 [no interval]" in text and "inconclusive" in text
    assert "no interval: 2 evaluation unit(s) on a side, fewer than 3" in text
    assert "stability of the selection: 0.50 (unstable selection)" in text


EXPERIMENTS = sorted((CONF_DIR / "experiment").glob("*.yaml"))
assert EXPERIMENTS, f"no experiment configs under {CONF_DIR}"


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_each_experiments_headline_fraction_is_the_one_its_summary_reports(path):
    """The summary's headline is the lower median of the swept fractions: in every
    experiment that is the fraction it declares (``selection.fraction``, or its base's)."""
    cfg = OmegaConf.load(path)
    declared, extended = OmegaConf.select(cfg, "selection.fraction"), cfg
    while declared is None:  # inherits from the experiment it extends, maybe through others
        base = next(d for d in extended.defaults if isinstance(d, str) and d.startswith("embed"))
        extended = OmegaConf.load(path.parent / f"{base}.yaml")
        declared = OmegaConf.select(extended, "selection.fraction")
    params = OmegaConf.select(cfg, "hydra.sweeper.params") or {}
    swept = params.get("selection.fraction", declared)  # no sweep: its one fraction
    fractions = pd.Series([float(f) for f in str(swept).split(",")])
    assert lower_median(fractions) == pytest.approx(float(declared))
