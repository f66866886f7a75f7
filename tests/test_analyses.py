"""Every analysis end to end on tiny models: what it writes, what its rows say, what it
caches, and that every cached value is keyed by everything that determines it."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from modularity.analyses.persistence import data_similarity
from modularity.models.cache import ModelCache
from modularity.pipeline import Pipeline
from modularity.run import run
from modularity.verdicts import STABLE, UNSTABLE, VERDICTS

SMALL = ["data.collect_size=2048", "data.eval_size=1024", "data.block_size=64"]
LLAMA = ["model=tiny_llama", *SMALL]


def rows_of(result) -> pd.DataFrame:
    return result.rows


@pytest.mark.slow
def test_prune_writes_its_artefacts_and_rows_with_intervals(make_cfg):
    cfg = make_cfg(*LLAMA, "task=code", "selection.fraction=0.1")
    result = run(cfg)
    out = Path(cfg.output_dir)
    for name in ("scores.safetensors", "metrics.json", "results.csv", "layer_counts.csv"):
        assert (out / name).is_file(), name
    assert not (out / "layer_counts.png").exists()  # per-layer selection: identical bars
    tensors = load_file(out / "scores.safetensors")
    assert tensors["scores"].shape == (2, 64) and tensors["mask"].sum(1).tolist() == [6, 6]
    rows = rows_of(result)
    effect = rows[(rows.metric == "effect") & (rows.measure == "top1")].iloc[0]
    assert effect.low <= effect.value <= effect.high
    drops = rows[(rows.metric == "drop") & (rows.measure == "top1")].set_index("variant").value
    assert effect.value == pytest.approx(drops["task"] - drops["reference"])
    for metric in ("stability", "collect_tokens", "evaluate_tokens", "evaluate_units"):
        assert (rows.metric == metric).any(), metric
    tokens = rows[rows.metric == "collect_tokens"].set_index("variant").value
    assert 0 < tokens["task"] <= 2048
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["before"]["task"]) == {"top1", "top10", "loss", "skip_top1", "skip_top10"}
    # one verdict per effect, computed once and read by results.csv and metrics.json alike
    assert effect.label in VERDICTS
    assert metrics["effect"]["task-reference"]["top1"]["label"] == effect.label
    margin = rows[(rows.metric == "null_margin") & (rows.measure == "top1")].iloc[0]
    assert margin.value == 1.0 and 0 <= margin.p_value <= 1
    stability = rows[rows.metric == "stability"].iloc[0]
    assert stability.label == (STABLE if stability.value >= 0.7 else UNSTABLE)
    # n counts the units with scored tokens on every row of a side, levels and drops alike
    top1 = rows[(rows.measure == "top1") & (rows.variant == "task")].set_index("metric").n
    assert top1["before"] == top1["after"] == top1["drop"] == effect.n


@pytest.mark.slow
def test_prune_on_an_image_model_uses_the_other_classes_as_reference(make_cfg):
    cfg = make_cfg("model=tiny_vit", "task=digits-3", "selection.scope=global")
    result = run(cfg)
    rows = rows_of(result)
    assert set(rows[rows.metric == "before"].measure) == {"top1", "loss"}
    assert int(rows[rows.metric == "n_selected"].value.iloc[0]) == round(0.05 * 2 * 64)
    pipe_reference = result.extras["selection"]
    assert pipe_reference.mask.sum() > 0
    units = rows[rows.metric == "evaluate_units"].set_index("variant").value
    assert units["reference"] > 5 * units["task"]  # nine other digits


@pytest.mark.slow
def test_a_cache_hit_skips_collection_and_the_baseline(make_cfg):
    cfg = make_cfg(*LLAMA, "task=code")
    models = ModelCache()  # as a sweep's jobs share it
    backbone = models.load(cfg.model).model.base_model
    calls = []
    handle = backbone.register_forward_hook(lambda *_: calls.append(1))
    try:
        run(cfg, models)
        first = len(calls)
        calls.clear()
        run(make_cfg(*LLAMA, "task=code", "selection.fraction=0.2"), models)
        second = len(calls)
    finally:
        handle.remove()
    # 2048 tokens / 64 = 32 blocks = 4 batches of 8; 1024 -> 2 batches. A later fraction only
    # evaluates the pruned model on task and reference.
    assert second == 2 + 2
    assert first > second


@pytest.mark.parametrize(
    "change",
    [
        "trainer.precision=bf16-true",
        pytest.param("model.dtype=bfloat16", marks=pytest.mark.slow),
        pytest.param("model.seed=7", marks=pytest.mark.slow),
        pytest.param("data.collect_size=1024", marks=pytest.mark.slow),
        pytest.param("data.block_size=32", marks=pytest.mark.slow),
        "data.exclude_from_reference=domain",
        pytest.param("task.seed=3", marks=pytest.mark.slow),
    ],
)
def test_every_determinant_of_a_cached_value_is_in_its_key(make_cfg, change):
    base = make_cfg(*LLAMA, "task=code")
    run(base)
    root = Path(base.cache.dir)
    before = set(root.iterdir())
    run(make_cfg(*LLAMA, "task=code", change))
    created = set(root.iterdir()) - before
    kinds = {json.loads((p / "meta.json").read_text())["meta"]["kind"] for p in created}
    assert "stats" in kinds or "tokens" in kinds, kinds


@pytest.mark.slow
def test_overlap_writes_matrices_twins_and_a_verdict(make_cfg):
    cfg = make_cfg(
        *LLAMA,
        "analysis=overlap",
        "tasks=[code,prose,biology]",
        "analysis.compare_random=true",
        "analysis.twins=2",
    )
    result = run(cfg)
    out = Path(cfg.output_dir)
    jaccard = pd.read_csv(out / "overlap_jaccard_all.csv", index_col=0)
    assert list(jaccard.index) == ["code", "prose", "biology"]
    assert (jaccard.values.diagonal() == 1).all() and (jaccard.values == jaccard.values.T).all()
    rows = rows_of(result)
    partners = set(rows[rows.metric == "index_jaccard"].partner)
    assert partners == {"tiny_llama-random1", "tiny_llama-random2"}
    mantel = rows[rows.metric == "mantel_r"]
    assert {
        ("tiny_llama", "tiny_llama-random1"),
        ("tiny_llama-random1", "tiny_llama-random2"),
    } <= set(zip(mantel.task, mantel.partner))
    assert "verdict" in json.loads((out / "overlap.json").read_text())
    for name in ("overlap.png", "trained_vs_random.png"):
        assert (out / name).is_file(), name
    assert not (out / "set_sizes.png").exists()  # per-layer selection: every share the same
    # the partial test's control: overlap of unigram distributions, no network (cached blocks)
    pipe = Pipeline(cfg)
    similarity = data_similarity(pipe, ["code", "prose", "biology"])
    ids = [
        pipe.text_blocks(pipe.task(name), "collect")["input_ids"].flatten().numpy()
        for name in ("code", "prose")
    ]
    width = max(int(i.max()) for i in ids) + 1
    p, q = (np.bincount(i, minlength=width) / len(i) for i in ids)
    assert similarity[0, 1] == pytest.approx(np.minimum(p, q).sum())
    assert np.allclose(similarity, similarity.T) and np.allclose(np.diag(similarity), 1.0)


def test_data_similarity_of_images_correlates_their_mean_images(make_cfg):
    cfg = make_cfg("model=tiny_vit", "data.collect_size=200", "tasks=[digits-0,digits-1]")
    pipe = Pipeline(cfg)
    names = ["digits-0", "digits-1", "digits-8"]
    means = []
    for name in names:
        loader, _ = pipe.loader(pipe.task(name), "collect")
        pixels = torch.cat([batch["pixel_values"] for batch in loader]).double()
        means.append(pixels.mean(0).flatten().numpy())
    assert np.allclose(data_similarity(pipe, names), np.corrcoef(means))


def test_overlap_needs_two_distinct_tasks(make_cfg):
    from modularity.errors import ConfigError

    with pytest.raises(ConfigError, match="at least 2 tasks"):
        run(make_cfg(*LLAMA, "analysis=overlap", "tasks=[code]"))
    with pytest.raises(ConfigError, match="more than once"):
        run(make_cfg(*LLAMA, "analysis=overlap", "tasks=[code,code]"))


@pytest.mark.slow
def test_moefy_clusters_gates_by_default_and_reports_alignment_by_depth(make_cfg, caplog):
    cfg = make_cfg(
        *LLAMA,
        "analysis=moefy",
        "tasks=[code,prose]",
        "analysis.n_null=50",
        "analysis.methods=[kmeans,coactivation,random]",
    )
    with caplog.at_level(logging.INFO, logger="modularity"):
        result = run(cfg)
    printed = caplog.text
    assert (
        "2 experts per layer in 2 layers, equal sizes, built by kmeans, coactivation, random "
        "(gate rows for weight clustering)" in printed
    )
    assert "alignment z" in printed and "random balanced partition (control)" in printed
    labels = load_file(Path(cfg.output_dir) / "expert_labels.safetensors")
    assert labels["kmeans"].shape == labels["coactivation"].shape == (2, 64)
    for method in ("kmeans", "coactivation", "random"):  # 64 neurons / 32
        assert torch.bincount(labels[method][0]).tolist() == [32, 32], method
    rows = rows_of(result)
    methods = {"kmeans", "coactivation", "random"}
    assert set(rows[rows.metric == "alignment_z"].variant) == methods
    assert set(rows[rows.metric == "alignment_z_by_depth"].variant) == methods
    within = rows[rows.metric == "coactivation_within"].set_index(["variant", "layer"]).value
    assert ((within >= 0) & (within <= 1)).all() and len(within) == 4


def test_moefy_defaults_to_the_gate_of_gated_mlps():
    from modularity.analyses.moefy import Moefy

    assert Moefy().which_weights(gated=True) == "gate"
    assert Moefy().which_weights(gated=False) == "up"


@pytest.mark.slow
def test_matched_damage_reaches_its_target_or_says_so(make_cfg):
    cfg = make_cfg(
        "model=tiny_vit",
        "analysis=match",
        "tasks=[digits-4,digits-7]",
        "analysis.target_ratio=0.5",
        "analysis.tolerance=0.1",
        "analysis.max_fraction=1.0",
        "model.seed=3",
    )
    rows = rows_of(run(cfg))
    for task in ("digits-4", "digits-7"):
        get = rows[rows.task == task].set_index("metric").value
        if get["converged"]:
            assert abs(get["matched_ratio"] - 0.5) <= 0.1
        else:
            assert get["matched_fraction"] == 1.0 or rows[rows.task == task].n.max() == 12
    assert (Path(cfg.output_dir) / "cross_eval.csv").is_file()


@pytest.mark.slow
def test_moefy_routes_every_router_and_reports_quality_with_intervals(make_cfg):
    cfg = make_cfg(
        *LLAMA,
        "data.eval_size=512",
        "analysis=moefy",
        "tasks=[code,prose]",
        "analysis.experts=8",
        "analysis.methods=[coactivation]",
        "analysis.routers=[similarity,mlp,oracle]",
        "analysis.ladder=[0.25,1.0]",
        "analysis.n_null=20",
        "analysis.routing_tokens=512",
        "analysis.router_epochs=2",
    )
    rows = rows_of(run(cfg))
    out = Path(cfg.output_dir)
    assert (out / "routed_quality.png").is_file() and (out / "routed.csv").is_file()
    drops = rows[(rows.metric == "drop") & (rows.measure == "top1")]
    routers = ("similarity", "mlp", "oracle")
    configs = {f"coactivation/{r}@{s}" for r in routers for s in ("0.25", "1")}
    assert set(drops.partner) == configs
    assert len(drops) == len(configs) * 2 * 2  # x tasks x sides
    dense = drops[drops.partner.str.endswith("@1")]
    assert (dense.value == 0).all()  # k = all experts is the dense model
    routed = drops[drops.partner.str.endswith("@0.25")]
    given = routed[routed.low.notna()]  # no interval where too few documents allow none
    assert ((given.low <= given.value + 1e-9) & (given.value <= given.high + 1e-9)).all()
    captured = rows[rows.metric == "captured_mass"].copy()
    by = captured.pivot_table(index=["partner", "layer"], values="value", aggfunc="first")
    for layer in ("0", "1"):
        oracle = by.loc[("coactivation/oracle@0.25", layer)].value
        for router in ("similarity", "mlp"):
            assert by.loc[(f"coactivation/{router}@0.25", layer)].value <= oracle + 1e-9
        assert by.loc[("coactivation/oracle@1", layer)].value == pytest.approx(1.0)
    usage = rows[rows.metric == "routing_concentration"]
    assert ((usage.value >= 0) & (usage.value <= 1)).all() and set(usage.task) == {"code", "prose"}
    overlap = rows[rows.metric == "pruning_set_in_task_experts_by_depth_minus_chance"]
    assert set(overlap.partner) == {c for c in configs if c.endswith("@0.25")}
    # The MLP router against similarity, paired on the same units: its drop minus theirs.
    compared = rows[rows.metric == "router_difference"]
    assert set(compared.partner) == {"coactivation/mlp-similarity@0.25"}  # not at k = all
    assert len(compared) == 2 * 2 * compared.measure.nunique()  # tasks x sides x measures
    every = rows[rows.metric == "drop"].set_index(["partner", "task", "variant", "measure"]).value
    for r in compared.itertuples():
        mlp, similarity = (
            every[(f"coactivation/{router}@0.25", r.task, r.variant, r.measure)]
            for router in ("mlp", "similarity")
        )
        assert r.value == pytest.approx(mlp - similarity, abs=1e-9)
        if r.low == r.low:
            assert r.low <= r.value <= r.high
