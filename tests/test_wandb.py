"""What W&B receives, read back from the files it writes offline.

A two-job sweep (overlap of two tasks, then pruning) runs with ``logger=wandb`` and
``WANDB_MODE=offline`` as the real command line. Each job's run is read from its
``.wandb`` file (W&B's record log: a LevelDB-style log of protobuf records) and its media
folder: one run per job, grouped by the sweep, named and typed by the analysis; pruning's
effect with its interval in the run summary; overlap's task x task matrix as a table and
its heatmaps as images.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from cli import SMALL, modularity_run
from safetensors.torch import load_file

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
            "analysis=overlap,prune",
            f"tasks=[{','.join(TASKS)}]",
            "+model=tiny_llama",
            "task=code",
            "selection.fraction=0.2",
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
    (out,) = [p for p in sweep.iterdir() if f"analysis={analysis}," in p.name]
    (run_dir,) = (out / "wandb").glob("offline-run-*")
    return out, read_run(run_dir)


@pytest.mark.slow
def test_each_job_is_its_own_run_grouped_by_the_sweep(sweep):
    (_, overlap), (_, prune) = job(sweep, "overlap"), job(sweep, "prune")
    assert overlap["id"] != prune["id"]
    assert overlap["group"] == prune["group"] == sweep.name
    assert (overlap["job_type"], prune["job_type"]) == ("overlap", "prune")
    assert overlap["name"] == "overlap tiny_llama code,prose top0.2"
    assert prune["name"] == "prune tiny_llama code top0.2"
    assert overlap["project"] == prune["project"] == "modularity"
    for run, analysis in ((overlap, "overlap"), (prune, "prune")):
        assert run["config"]["model"]["name"] == "tiny_llama"
        assert run["config"]["analysis"]["_target_"].split(".")[-2] == analysis
        assert run["config"]["selection"]["fraction"] == 0.2
    # The first job's run was closed: nothing of it went into the second one.
    assert not any(key.startswith("overlap_") for key in prune["summary"])


@pytest.mark.slow
def test_the_prune_run_summary_holds_the_effect_with_its_interval(sweep):
    out, run = job(sweep, "prune")
    rows = pd.read_csv(out / "results.csv").fillna({"variant": "", "measure": ""})
    summary = run["summary"]
    for measure in ("top1", "loss"):
        key = f"effect/code/task-reference/{measure}"
        row = rows[(rows.metric == "effect") & (rows.measure == measure)].iloc[0]
        assert summary[key] == pytest.approx(row.value)
        assert (summary[f"{key}/low"], summary[f"{key}/high"]) == pytest.approx((row.low, row.high))
        assert summary[f"{key}/low"] <= summary[key] <= summary[f"{key}/high"]
    assert "stability/code" in summary
    results = json.loads(logged(run, "results", "table-file").read_text())
    assert len(results["data"]) == len(rows) and "effect" in {r[10] for r in results["data"]}
    assert logged(run, "layer_counts", "image-file").suffix == ".png"


@pytest.mark.slow
def test_the_overlap_run_logs_the_task_matrix_and_its_heatmaps(sweep):
    out, run = job(sweep, "overlap")
    table = json.loads(logged(run, "overlap_jaccard", "table-file").read_text())
    assert table["columns"] == ["row", "column", "value"]
    matrix = {(a, b): value for a, b, value in table["data"]}
    assert set(matrix) == {(a, b) for a in TASKS for b in TASKS}
    # Against the neuron sets the run saved: Jaccard of code's and prose's selections.
    sets = load_file(out / "sets.safetensors")
    a, b = sets["code"], sets["prose"]
    expected = float((a & b).sum() / (a | b).sum())
    assert matrix[("code", "prose")] == matrix[("prose", "code")] == pytest.approx(expected)
    assert matrix[("code", "code")] == matrix[("prose", "prose")] == 1.0
    assert run["summary"]["jaccard/code/prose"] == pytest.approx(expected)
    for name in ("overlap_z", "overlap_containment"):
        logged(run, name, "table-file")
    for name in ("overlap_jaccard_all", "overlap_z_all", "set_sizes"):
        assert logged(run, name, "image-file").suffix == ".png"
