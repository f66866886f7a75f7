"""Every figure, drawn from small hand-made data, is readable: a title, labelled axes (and
colour bars), nothing outside the canvas, no two titles on top of each other, legends off
the data; and a figure with nothing to show (identical bars) is not drawn at all."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text

from modularity import figures
from modularity.analyses.base import ROW_COLUMNS, SETTING_COLUMNS
from modularity.analyses.moefy import Moefy
from modularity.analyses.overlap import Overlap
from modularity.analyses.prune import Prune

TASKS = ["code", "prose", "biology", "a-rather-long-task-name"]


@pytest.fixture
def drawn(monkeypatch) -> list[Figure]:
    """The figures saved while the test runs (``Figure.savefig`` recorded)."""
    saved: list[Figure] = []
    original = Figure.savefig

    def record(self, *args, **kwargs):
        saved.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", record)
    return saved


def extent(artist, renderer):
    return artist.get_window_extent(renderer)


def check_readable(fig: Figure) -> None:
    """Title and labels set; every drawn artist inside the canvas; titles apart; legends
    outside every panel's data area."""
    canvas = FigureCanvasAgg(fig)  # the figure was closed after saving
    canvas.draw()
    renderer = canvas.get_renderer()
    width, height = fig.bbox.width, fig.bbox.height
    assert fig._suptitle is not None and fig._suptitle.get_text().strip(), "no title"
    panels = [ax for ax in fig.axes if ax.get_visible() and not hasattr(ax, "_colorbar")]
    for ax in panels:
        assert ax.get_xlabel().strip() and ax.get_ylabel().strip(), "an axis has no label"
    for ax in fig.axes:
        if hasattr(ax, "_colorbar"):
            assert ax.get_ylabel().strip() or ax.get_xlabel().strip(), "a colour bar has no label"
    tight = fig.get_tightbbox(renderer)  # inches: everything drawn
    dpi = fig.dpi
    where = f"{fig._suptitle.get_text()!r}: drawn {tight.bounds} in {width / dpi}x{height / dpi}"
    assert tight.x0 >= -0.5 / dpi and tight.y0 >= -0.5 / dpi, where
    assert tight.x1 <= width / dpi + 0.5 / dpi and tight.y1 <= height / dpi + 0.5 / dpi, where
    texts = [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
    named = [fig._suptitle, *(ax.title for ax in panels), *(ax.xaxis.label for ax in panels)]
    named += [ax.yaxis.label for ax in panels]
    for text in [t for t in named if t in texts]:
        box = extent(text, renderer)
        assert box.x0 >= -1 and box.y0 >= -1, text.get_text()
        assert box.x1 <= width + 1 and box.y1 <= height + 1, text.get_text()
    titles = [t for t in named if t.get_visible() and t.get_text().strip()]
    for a, b in combinations(titles, 2):  # titles and axis labels never on top of each other
        assert not extent(a, renderer).overlaps(extent(b, renderer)), (a.get_text(), b.get_text())
    legends = [*fig.legends, *(ax.get_legend() for ax in panels if ax.get_legend())]
    for legend in legends:
        for ax in panels:
            assert not extent(legend, renderer).overlaps(ax.get_window_extent(renderer)), (
                "a legend covers a panel"
            )


def only(drawn: list[Figure]) -> Figure:
    assert len(drawn) == 1, f"{len(drawn)} figures drawn"
    return drawn[0]


def tidy(rows: list[dict], **settings) -> pd.DataFrame:
    """Rows as a report table: every settings column, with defaults."""
    base = dict.fromkeys(SETTING_COLUMNS, "")
    base.update(model="m", analysis="prune", fraction=0.05, run="r")
    frame = pd.DataFrame([{**base, **settings, **row} for row in rows])
    for column in ROW_COLUMNS:
        if column not in frame:
            frame[column] = "" if column in ("task", "measure", "variant", "partner") else np.nan
    frame["layer"] = frame["layer"].replace("", "all").fillna("all")
    return frame


def test_layer_counts_drawn_when_they_differ_and_not_when_equal(tmp_path, drawn):
    title = "tiny_llama: code neurons per layer (top 0.05, mad, global scope)"
    assert figures.plot_layer_counts(tmp_path / "same.png", [5, 5, 5, 5], 100, title) is None
    assert not (tmp_path / "same.png").exists()
    path = figures.plot_layer_counts(tmp_path / "counts.png", [3, 9, 1, 7], 100, title)
    assert path.is_file()
    check_readable(only(drawn))


@pytest.mark.slow
def test_overlap_heatmaps_are_one_figure_of_labelled_panels(tmp_path, drawn):
    rng = np.random.default_rng(0)
    rows = []
    for metric, centre in (("jaccard", False), ("containment", False), ("z", True)):
        panels = {f"{metric}, layers: {s}": rng.random((4, 4)) for s in ("all", "early", "late")}
        rows.append(figures.HeatmapRow(f"{metric} (0-1)", panels, centre))
    long_title = "tiny_lm_text: overlap of task neuron sets, whole model and by depth third " * 2
    figures.plot_heatmaps(tmp_path / "o.png", TASKS, rows, long_title, "task B", "task A")
    check_readable(only(drawn))


def test_cross_eval_keeps_its_diagonal_and_names_both_axes(tmp_path, drawn):
    matrix = [[0.8, 0.95], [0.9, 0.79]]
    figures.plot_heatmap(
        tmp_path / "c.png", TASKS[:2], matrix, "matched", "ratio", False, "evaluated", "pruned",
        mask_diagonal=False,
    )  # fmt: skip
    fig = only(drawn)
    check_readable(fig)
    image = fig.axes[0].images[0].get_array()
    assert not np.ma.is_masked(image[0, 0]) and image[0, 0] == pytest.approx(0.8)


def test_bars_with_chance_levels_and_identical_bars_skipped(tmp_path, drawn):
    assert figures.plot_bars(tmp_path / "s.png", TASKS, [0.05] * 4, "share", "sizes") is None
    figures.plot_bars(
        tmp_path / "t.png", [f"{t} vs twin-1" for t in TASKS], [0.02, 0.03, 0.01, 0.05],
        "Jaccard (0-1)", "trained vs random twins", "task vs model",
        chance=[0.02] * 4, notes=["z 0.1", "z 1.0", "z -0.5", "z 3.0"],
    )  # fmt: skip
    fig = only(drawn)
    check_readable(fig)
    assert fig.legends and "chance" in " ".join(t.get_text() for t in fig.legends[0].texts)


def test_layer_shares_only_when_they_differ(tmp_path, drawn):
    same = {task: [0.05] * 4 for task in TASKS}
    assert figures.plot_layer_shares(tmp_path / "s.png", same, "sizes") is None
    shares = {task: [0.01 * (k + 1), 0.05, 0.09, 0.05] for k, task in enumerate(TASKS)}
    figures.plot_layer_shares(tmp_path / "s.png", shares, "each task's share per layer")
    check_readable(only(drawn))


def test_expert_sizes_only_when_experts_differ(tmp_path, drawn):
    balanced = torch.arange(64).remainder(4).reshape(1, 64).repeat(2, 1)
    assert figures.plot_size_histograms(tmp_path / "b.png", balanced, [0, 1], 4, "e") is None
    uneven = torch.tensor([[0] * 40 + [1] * 10 + [2] * 10 + [3] * 4, [0] * 16 * 4])
    figures.plot_size_histograms(tmp_path / "u.png", uneven, [0, 1], 4, "expert sizes")
    check_readable(only(drawn))


def alignment_rows(model: str = "m") -> list[dict]:
    rows = []
    for statistic in ("topk_fraction", "entropy", "ami"):
        for i, method in enumerate(("balanced", "plain", "random")):
            for j, depth in enumerate(("early", "middle", "late")):
                value = 3.0 - i + j * 0.5
                rows.append(
                    dict(metric="alignment_z_by_depth", variant=method, measure=statistic,
                         layer=depth, value=value, low=value - 1, high=value + 1, n=3.0)
                )  # fmt: skip
    return rows


def test_alignment_by_depth_names_its_statistics_and_interval(tmp_path, drawn):
    frame = pd.DataFrame(alignment_rows())
    figures.plot_alignment_by_depth(tmp_path / "a.png", frame, "m: alignment")
    fig = only(drawn)
    check_readable(fig)
    assert "t-interval" in fig._suptitle.get_text()
    assert "top expert" in " ".join(ax.get_ylabel().replace("\n", " ") for ax in fig.axes)


@pytest.mark.parametrize("mantel", [True, False])
def test_dynamics_without_empty_legend_entries(tmp_path, drawn, mantel):
    steps = np.array([0, 64, 256, 1024])
    summary = pd.DataFrame(
        {
            "checkpoint": ["init", "step-64", "step-256", "final"],
            "step": steps,
            "effect": [0.1, 1.0, 2.0, 3.0],
            "effect_low": [-1.0, 0.0, 1.0, 2.0],
            "effect_high": [1.0, 2.0, 3.0, 4.0],
            "jaccard_final": [0.03, 0.1, 0.5, 1.0],
            "chance_final": [0.03] * 4,
            "jaccard_init": [1.0, 0.2, 0.05, 0.03],
            "chance_init": [0.03] * 4,
            "mantel_final": [0.2, 0.5, 0.8, np.nan] if mantel else [np.nan] * 4,
            "mantel_init": [np.nan] * 4,
            "mean_jaccard": [0.1, 0.1, 0.2, 0.2],
        }
    )
    figures.plot_dynamics(tmp_path / "d.png", summary, "m: modularity over training")
    fig = only(drawn)
    check_readable(fig)
    labels = [t.get_text() for t in fig.legends[0].texts]
    assert all(labels) and ("Mantel r with final structure" in labels) == mantel


def row(metric, value, task, variant="", measure="", partner="", **where) -> dict:
    """A tidy row with a +-1 interval."""
    return dict(metric=metric, value=value, task=task, variant=variant, measure=measure,
                partner=partner, low=value - 1, high=value + 1, **where)  # fmt: skip


@pytest.mark.slow
def test_report_figures_of_a_mixed_folder(tmp_path, drawn):
    """drop_vs_fraction over two models, overlap heatmaps of two runs in one figure, the
    trained-vs-random CDF and alignment by depth: all readable."""
    rows = []
    for model in ("tiny_lm_text", "tiny_vit_fashion_with_a_long_name"):
        for fraction in (0.02, 0.05, 0.1):
            where = {"model": model, "fraction": fraction, "run": f"{model}{fraction}"}
            for k, task in enumerate(TASKS):
                drop = 10 * fraction * (k + 1)
                for side, value in (("task", drop), ("reference", drop / 3)):
                    rows.append(row("drop", value, task, side, "top1", **where))
                rows.append(row("effect", drop * 2 / 3, task, "task-reference", "top1", **where))
    assert Prune.figures(tidy(rows), tmp_path)
    overlap_rows = []
    for model in ("tiny_lm_text", "smollm2_135m"):
        where = {"model": model, "run": model}
        for a, b in combinations(TASKS, 2):
            overlap_rows += [row("jaccard", 0.2, a, partner=b, **where)]
            overlap_rows += [row("jaccard", 0.2, b, partner=a, **where)]
        for task in TASKS:
            for partner, value in (("twin-1", 0.02), (f"{model}-init", 0.05)):
                overlap_rows += [row("index_jaccard", value, task, partner=partner, **where)]
                overlap_rows += [
                    row("expected_index_jaccard", 0.02, task, partner=partner, **where)
                ]
    assert len(Overlap.figures(tidy(overlap_rows, analysis="overlap"), tmp_path)) == 2
    assert Moefy.figures(tidy(alignment_rows(), analysis="moefy"), tmp_path)
    assert len(drawn) == 4
    for fig in drawn:
        check_readable(fig)
    assert {p.name for p in Path(tmp_path).glob("*.png")} == {
        "drop_vs_fraction.png",
        "overlap_jaccard.png",
        "trained_vs_random_cdf.png",
        "alignment_by_depth.png",
    }
