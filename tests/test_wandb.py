"""What W&B receives, read back from the files it writes offline.

A three-job sweep (overlap of two tasks, pruning, MoEfication) runs with ``logger=wandb``
and ``WANDB_MODE=offline`` as the real command line. Each job's run is read from its
``.wandb`` file (W&B's record log: a LevelDB-style log of protobuf records) and its media
folder: one run per job, grouped by the sweep's start time, named and typed by the
analysis, its settings as flat config keys; pruning's effect with its interval under
task-free keys; series over layers; overlap's task x task matrices as long tables and its
heatmap as an image; and every key the README's dashboard recipe names.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from cli import ROOT, SMALL, modularity_run
from safetensors.torch import load_file

# One worker runs the whole module (make test: --dist loadgroup), so that the module's one sweep
# runs once, not once per worker.
pytestmark = pytest.mark.xdist_group("wandb_sweep")

TASKS = ["code", "prose"]


def records(path: Path) -> Iterator[bytes]:
    """The records of a ``.wandb`` file: a 7-byte header (``:W&B``, magic, version), then
    32 KiB blocks of chunks (crc32 4 bytes, length 2, type 1: full, first, middle, last)."""
    data = path.read_bytes()
    assert data[:4] == b":W&B", data[:7]
    pos, block, pending = 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # a block's tail too short for a chunk header is padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0 and length == 0:  # zero padding to the end of the block
            pos += left
            continue
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 1:
            yield chunk
        elif kind == 2:
            pending = chunk
        elif kind == 3:
            pending += chunk
        elif kind == 4:
            yield pending + chunk


def read_run(run_dir: Path) -> dict:
    """One offline run: its identity, config, summary and history (JSON values), and the
    folder holding its media files."""
    from wandb.proto import wandb_internal_pb2 as pb

    (log,) = run_dir.glob("*.wandb")
    run: dict = {"summary": {}, "history": [], "config": {}, "files": run_dir / "files"}
    for data in records(log):
        record = pb.Record()
        record.ParseFromString(data)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            run |= {"id": r.run_id, "name": r.display_name, "group": r.run_group}
            run |= {"job_type": r.job_type, "project": r.project}
        elif kind == "config":
            for item in record.config.update:
                run["config"][item.key] = json.loads(item.value_json)
        elif kind == "summary":
            for item in record.summary.update:
                key = item.key or "/".join(item.nested_key)
                run["summary"][key] = json.loads(item.value_json)
        elif kind == "history":
            step = {}
            for item in record.history.item:
                step[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
            run["history"].append(step)
    return run


def logged(run: dict, name: str, kind: str) -> Path:
    """The media file ``name`` was logged as (``table-file`` or ``image-file``)."""
    (step,) = [s for s in run["history"] if s.get(f"{name}/_type") == kind]
    path = run["files"] / step[f"{name}/path"]
    assert path.is_file(), path
    return path


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wandb")
    sweep = tmp / "sweep-wandb"
    modularity_run(
        [
            "-m",
            "logger=wandb",
            "analysis=overlap,prune,moefy",
            f"tasks=[{','.join(TASKS)}]",
            "+model=tiny_llama",
            "task=code",
            "selection.fraction=0.2",
            "selection.scope=global",
            *SMALL,
            f"hydra.sweep.dir={sweep}",
        ],
        MODULARITY_CACHE_DIR=str(tmp / "cache"),
        WANDB_MODE="offline",
        WANDB_SILENT="true",
        WANDB_DIR=str(tmp),  # the runs themselves go to their job directories
        **{f"WANDB_{d}_DIR": str(tmp / d.lower()) for d in ("CACHE", "CONFIG", "DATA")},
    )
    return sweep


def job(sweep: Path, analysis: str) -> tuple[Path, dict]:
    """The job directory of ``analysis`` and its one W&B run."""
    (out,) = [p for p in sweep.iterdir() if p.is_dir() and f"analysis={analysis}" in p.name]
    (run_dir,) = (out / "wandb").glob("offline-run-*")
    return out, read_run(run_dir)


@pytest.mark.slow
def test_each_job_is_its_own_run_grouped_by_the_sweep(sweep):
    (out, overlap), (_, prune) = job(sweep, "overlap"), job(sweep, "prune")
    assert "logger=" not in out.name and "trainer." not in out.name  # short job directories
    assert overlap["id"] != prune["id"]
    assert overlap["group"] == prune["group"]
    assert re.fullmatch(rf"\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d {sweep.name}", prune["group"])
    assert (overlap["job_type"], prune["job_type"]) == ("overlap", "prune")
    assert overlap["name"] == "overlap tiny_llama code,prose top0.2"
    assert prune["name"] == "prune tiny_llama code top0.2"
    assert overlap["project"] == prune["project"] == "modularity"
    for run, analysis in ((overlap, "overlap"), (prune, "prune")):
        config = run["config"]
        assert (config["model"], config["analysis"], config["fraction"]) == (
            "tiny_llama",
            analysis,
            0.2,
        )
        assert (config["task"], config["tasks"], config["site"]) == ("code", "code,prose", "mlp")
        assert config["config"]["model"]["name"] == "tiny_llama"  # the whole composed config
    # The first job's run was closed: nothing of it went into the second one.
    assert not any(key.startswith("overlap_") for key in prune["summary"])


@pytest.mark.slow
def test_the_prune_run_has_task_free_keys_with_intervals_and_layer_series(sweep):
    out, run = job(sweep, "prune")
    rows = pd.read_csv(out / "results.csv").fillna({"variant": "", "measure": ""})
    summary = run["summary"]
    for measure in ("top1", "loss"):
        key = f"effect/{measure}"
        row = rows[(rows.metric == "effect") & (rows.measure == measure)].iloc[0]
        assert summary[key] == pytest.approx(row.value)
        assert (summary[f"{key}_low"], summary[f"{key}_high"]) == pytest.approx((row.low, row.high))
        for side in ("task", "reference"):
            drop = rows[
                (rows.metric == "drop") & (rows.variant == side) & (rows.measure == measure)
            ]
            assert summary[f"drop/{side}/{measure}"] == pytest.approx(drop.value.iloc[0])
    assert not any("code" in key for key in summary)  # the task is in the config, not the keys
    headline = [s for s in run["history"] if "effect/top1" in s]
    assert len(headline) == 1 and headline[0]["fraction"] == 0.2
    mask = load_file(out / "scores.safetensors")["mask"]
    layers = [s for s in run["history"] if "by_layer/selected" in s]
    assert [s["layer"] for s in layers] == list(range(mask.shape[0]))
    assert [s["by_layer/selected"] for s in layers] == mask.sum(1).tolist()
    results = json.loads(logged(run, "results", "table-file").read_text())
    assert len(results["data"]) == len(rows)
    counts = mask.sum(1).tolist()
    images = [s for s in run["history"] if s.get("layer_counts/_type") == "image-file"]
    # The bar chart is drawn (and logged) only when the per-layer counts differ.
    assert len(images) == (1 if len(set(counts)) > 1 else 0), counts


@pytest.mark.slow
def test_the_overlap_run_logs_the_task_matrices_and_their_heatmap(sweep):
    out, run = job(sweep, "overlap")
    table = json.loads(logged(run, "overlap_jaccard", "table-file").read_text())
    assert table["columns"] == ["layers", "row", "column", "value"]
    whole = {(a, b): value for scope, a, b, value in table["data"] if scope == "all"}
    assert set(whole) == {(a, b) for a in TASKS for b in TASKS}
    # Against the neuron sets the run saved: Jaccard of code's and prose's selections.
    sets = load_file(out / "sets.safetensors")
    a, b = sets["code"], sets["prose"]
    expected = float((a & b).sum() / (a | b).sum())
    assert whole[("code", "prose")] == whole[("prose", "code")] == pytest.approx(expected)
    assert whole[("code", "code")] == whole[("prose", "prose")] == 1.0
    assert run["summary"]["jaccard/code/prose"] == pytest.approx(expected)
    by_layer = {
        s["layer"]: s["by_layer/jaccard/code/prose"] for s in run["history"] if "layer" in s
    }
    for layer, value in by_layer.items():
        x, y = a[int(layer)], b[int(layer)]
        assert value == pytest.approx(float((x & y).sum() / (x | y).sum()))
    for name in ("overlap_z", "overlap_containment"):
        logged(run, name, "table-file")
    assert logged(run, "overlap", "image-file").suffix == ".png"


def recipe_keys() -> set[str]:
    """The backticked names in the README's W&B dashboard table (how-to and keys columns)."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### W&B dashboard", 1)[1].split("\n#", 1)[0]
    rows = [line.split("|")[2:4] for line in section.splitlines() if line.startswith("| ")]
    return {name for cells in rows[1:] for cell in cells for name in re.findall(r"`([^`]+)`", cell)}


@pytest.mark.slow
def test_every_key_of_the_readme_dashboard_recipe_is_logged(sweep):
    """The recipe names only what the runs hold: config keys, summary or history keys,
    logged tables and plots, or a column of a logged table."""
    found: set[str] = set()
    for analysis in ("overlap", "prune", "moefy"):
        _, run = job(sweep, analysis)
        found |= set(run["config"]) | set(run["summary"])
        for step in run["history"]:
            found |= set(step)
            found |= {k.rsplit("/", 1)[0] for k in step if k.endswith("/_type")}
        for table in run["files"].rglob("*.table.json"):
            found |= set(json.loads(table.read_text())["columns"])
    keys = recipe_keys()
    assert {"effect/top1", "fraction", "by_layer/alignment_z/kmeans"} <= keys
    assert keys <= found, sorted(keys - found)
