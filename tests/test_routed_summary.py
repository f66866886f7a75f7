"""summary.md's routed-inference section, from hand-made rows: the curve per evaluation
split (with the share of dense top-1 kept), and the trained router against similarity."""

from __future__ import annotations

import math

import pandas as pd

from modularity.analyses.base import Row
from modularity.analyses.moefy import Moefy


def frame(rows: list[Row], **settings: str) -> pd.DataFrame:
    out = pd.DataFrame([r.__dict__ for r in rows])
    for key, value in {"model": "m", "analysis": "moefy", "run": "r", **settings}.items():
        out[key] = value
    return out


def curve_rows(router: str, top1: float, loss: float) -> list[Row]:
    """A task's and its reference's drops at a quarter of the experts."""
    label = f"kmeans/{router}@0.25"
    where = {"task": "prose", "partner": label}
    rows = []
    for side in ("task", "reference"):
        rows += [
            Row("drop", top1, measure="top1", variant=side, low=top1 - 2, high=top1 + 2, **where),
            Row("relative_drop", 40.0, measure="top1", variant=side, low=30, high=50, **where),
            Row(
                "drop", loss, measure="loss", variant=side, low=loss - 0.1, high=loss + 0.1, **where
            ),
        ]
    return rows


def difference(side: str, value: float, low: float, high: float) -> Row:
    return Row(
        "router_difference",
        value,
        task="prose",
        measure="loss",
        variant=side,
        partner="kmeans/mlp-similarity@0.25",
        low=low,
        high=high,
    )


def test_the_curve_gives_every_split_its_interval_and_the_dense_top1_kept():
    rows = [*curve_rows("similarity", 30.0, 2.0), *curve_rows("mlp", 20.0, 1.0)]
    rows.append(Row("captured_mass", 0.4, partner="kmeans/mlp@0.25", layer="0"))
    rows.append(Row("captured_mass", 0.6, partner="kmeans/mlp@0.25", layer="1"))
    text = "\n".join(Moefy.summary(frame(rows)))
    line = "| kmeans | mlp | 0.25 | 0.500 | prose's reference | +20.0 [+18.0, +22.0] | "
    assert line + "60.0 [50.0, 70.0] | +1.000 [+0.900, +1.100] |" in text
    assert "| kmeans | similarity | 0.25 | – | prose | +30.0 [+28.0, +32.0] |" in text


def test_router_comparison_counts_where_the_loss_interval_lies():
    rows = [
        difference("task", -0.5, -0.8, -0.2),  # below 0: the MLP router loses less
        difference("reference", 0.1, -0.1, 0.3),  # across 0
    ]
    text = "\n".join(Moefy.summary(frame(rows)))
    counted = "Of the 2 cases with an interval, its loss interval lies below 0 in 1, above 0 in 0"
    assert counted + ", and includes 0 in 1" in text
    assert "| kmeans | 0.25 | prose's reference | – | +0.100 [-0.100, +0.300] | – |" in text


def test_an_interval_missing_is_not_counted_as_crossing_zero():
    rows = [difference("task", -0.5, math.nan, math.nan), difference("reference", 0.4, 0.2, 0.6)]
    text = "\n".join(Moefy.summary(frame(rows)))
    assert (
        "Of the 1 cases with an interval, its loss interval lies below 0 in 0, above 0 in 1" in text
    )


def test_two_experiments_on_one_model_get_a_section_each():
    one = frame(curve_rows("mlp", 20.0, 1.0), experiment="a", run="r1")
    two = frame(curve_rows("mlp", 10.0, 0.5), experiment="b", run="r2")
    text = "\n".join(Moefy.summary(pd.concat([one, two], ignore_index=True)))
    assert "experiment=a:" in text and "experiment=b:" in text
    assert text.index("+20.0 [") < text.index("experiment=b:") < text.index("+10.0 [")


def test_the_curve_keeps_a_single_tasks_own_interval_and_averages_several():
    from modularity.analyses.routed_quality import quality_table

    one = quality_table(frame(curve_rows("mlp", 20.0, 1.0)))
    assert one.task.iloc[0] == (20.0, 18.0, 22.0) and one.reference.iloc[0] == (20.0, 18.0, 22.0)
    other = [Row(**{**r.__dict__, "task": "code"}) for r in curve_rows("mlp", 30.0, 1.0)]
    both = quality_table(frame([*curve_rows("mlp", 20.0, 1.0), *other])).task.iloc[0]
    assert both[0] == 25.0 and both[1] < 20.0 < 30.0 < both[2]  # t over two tasks
