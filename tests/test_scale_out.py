"""Scaling out: a sweep through Hydra's submitit launcher (local mode) shares one statistics
cache across its jobs, and a pruning run under Lightning DDP (two CPU processes, gloo)
selects what one process selects, printing and writing its results once.

Both run the real command line as a subprocess.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from cli import SMALL as CLI_SMALL
from cli import modularity_run
from safetensors.torch import load_file

from modularity.errors import ConfigError
from modularity.infra.validate import check_group_choices
from modularity.run import run

SMALL = CLI_SMALL
HEADER = "95% intervals over evaluation units"  # in the first line of prune's console summary


def run_with_cache(args: list[str], cache: Path, **env: str) -> subprocess.CompletedProcess:
    return modularity_run(args, MODULARITY_CACHE_DIR=str(cache), WANDB_MODE="disabled", **env)


def cache_kinds(cache: Path) -> list[dict]:
    """The ``meta`` of every entry in the cache (kind, data identity, split, ...)."""
    return [json.loads(meta.read_text())["meta"] for meta in sorted(cache.glob("*/meta.json"))]


def test_hydras_own_launchers_are_valid_choices():
    """The entry point checks group choices before Hydra starts; Hydra's launcher plugins
    (not files of modularity's config tree) must pass, a misspelt model must not."""
    check_group_choices(["hydra/launcher=submitit_local", "hydra/launcher=submitit_slurm"])
    check_group_choices(["hydra/launcher=joblib", "hydra/launcher=local"])
    with pytest.raises(ConfigError, match="unknown model"):
        check_group_choices(["model=tiny_lama"])


@pytest.mark.slow
def test_a_submitit_sweep_shares_one_statistics_cache(tmp_path):
    cache, sweep = tmp_path / "cache", tmp_path / "sweep"
    run_with_cache(
        [
            "-m",
            "hydra/launcher=submitit_local",
            "+model=tiny_llama",
            "task=code",
            "selection.fraction=0.05,0.1",
            *SMALL,
            f"hydra.sweep.dir={sweep}",
        ],
        cache,
    )
    # submitit ran the jobs (one log per job in its folder), and both finished.
    assert len(list((sweep / ".submitit").glob("*/*_log.out"))) == 2
    jobs = sorted(p.parent for p in sweep.glob("*/results.csv"))
    assert len(jobs) == 2
    fractions = [pd.read_csv(job / "results.csv").fraction.unique().tolist() for job in jobs]
    assert fractions == [[0.05], [0.1]]

    # One cache for both jobs: the statistics one job needs (task and reference), once.
    stats = [m for m in cache_kinds(cache) if m["kind"] == "stats"]
    assert sorted(m["data"]["role"] for m in stats) == ["reference", "task"]
    assert {m["data"]["task"]["name"] for m in stats if m["data"]["role"] == "task"} == {"code"}

    # Same statistics, so the same scores, and the smaller selection inside the larger.
    small, large = (load_file(job / "scores.safetensors") for job in jobs)
    assert torch.equal(small["scores"], large["scores"])
    assert small["mask"].sum() < large["mask"].sum()
    assert not (small["mask"] & ~large["mask"]).any()


@pytest.mark.slow
def test_ddp_prunes_like_one_process_and_reports_once(make_cfg, tmp_path):
    one = run(make_cfg("+model=tiny_llama", "task=code", *SMALL))
    ddp_dir = tmp_path / "ddp"
    scratch = ddp_dir / "tmp"  # rank 1's throwaway directory lands here
    scratch.mkdir(parents=True)
    proc = run_with_cache(
        [
            "+model=tiny_llama",
            "task=code",
            *SMALL,
            "trainer.strategy=ddp",
            "trainer.devices=2",
            f"hydra.run.dir={ddp_dir / 'run'}",
        ],
        ddp_dir / "cache",  # its own cache: nothing of the single-process run is reused
        TMPDIR=str(scratch),
    )
    output = proc.stdout + proc.stderr
    assert "GLOBAL_RANK: 1" in output  # two processes really ran
    assert output.count(HEADER) == 1, output[-4000:]
    assert [p.relative_to(ddp_dir) for p in ddp_dir.rglob("results.csv")] == [
        Path("run/results.csv")
    ]
    assert not list(scratch.glob("modularity-rank*"))  # rank 1 cleaned up after itself

    mine = load_file(ddp_dir / "run" / "scores.safetensors")
    assert torch.equal(mine["mask"], one.extras["mask"])
    torch.testing.assert_close(mine["scores"], one.extras["scores"])
    rows = pd.read_csv(ddp_dir / "run" / "results.csv")
    key = ["metric", "task", "measure", "variant", "partner", "layer"]
    theirs = one.rows.fillna({"task": "", "measure": "", "variant": "", "partner": ""})
    mine_rows = rows.fillna({"task": "", "measure": "", "variant": "", "partner": ""})
    merged = mine_rows.merge(theirs, on=key, suffixes=("_ddp", "_one"), validate="1:1")
    assert len(merged) == len(one.rows)
    np.testing.assert_allclose(merged.value_ddp, merged.value_one, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(merged.low_ddp, merged.low_one, rtol=1e-6, atol=1e-9)
