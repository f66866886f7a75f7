"""The default sweeper: each job of a multirun composed once, and copies that are the
job's own (modularity.infra.sweeper; its checks of invalid jobs: tests/test_bad_input.py)."""

from __future__ import annotations

import pickle

import pytest
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra.core.global_hydra import GlobalHydra
from hydra.types import RunMode
from omegaconf import OmegaConf
from test_bad_input import TINY

from modularity.config import hydra_context
from modularity.infra.sweeper import ComposedOnce


def test_a_composed_job_is_handed_out_as_copies_and_pickles_without_them():
    with hydra_context():
        loader = GlobalHydra.instance().config_loader()
        master = loader.load_configuration("config", [], run_mode=RunMode.MULTIRUN)
        once = pickle.loads(pickle.dumps(ComposedOnce(loader)))  # as the joblib launcher sends it
        first = once.load_sweep_config(master, ["selection.fraction=0.2"])
        first.selection.fraction = 0.9  # a launcher sets the job's number on its copy
        second = once.load_sweep_config(master, ["selection.fraction=0.2"])
        other = once.load_sweep_config(master, ["selection.fraction=0.3"])
        assert second.selection.fraction == 0.2 and other.selection.fraction == 0.3
        expected = loader.load_sweep_config(master, ["selection.fraction=0.2"])
        assert OmegaConf.to_yaml(second) == OmegaConf.to_yaml(expected)
        assert once.get_sources() is not None  # the rest is the wrapped loader's
        # What a launcher sends to each job's process does not carry the composed jobs.
        grown = len(pickle.dumps(once)) - len(pickle.dumps(ComposedOnce(loader)))
        assert grown < len(pickle.dumps(second)) / 10


@pytest.mark.slow
def test_a_multirun_composes_each_job_once(tmp_path, in_process, monkeypatch):
    composed = []
    original = ConfigLoaderImpl.load_sweep_config

    def counted(self, master_config, sweep_overrides):
        composed.append(tuple(sweep_overrides))
        return original(self, master_config, sweep_overrides)

    monkeypatch.setattr(ConfigLoaderImpl, "load_sweep_config", counted)
    sweep = tmp_path / "sweep"
    proc = in_process("-m", *TINY, "selection.fraction=0.1,0.2", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(composed) == 2 and len(set(composed)) == 2  # checked and launched from one
    for number, fraction in enumerate((0.1, 0.2)):
        (job,) = sweep.glob(f"{number}_*selection.fraction={fraction}")
        hydra = OmegaConf.load(job / ".hydra" / "hydra.yaml").hydra
        assert hydra.job.num == number
        assert OmegaConf.load(job / ".hydra" / "config.yaml").selection.fraction == fraction
        assert (job / "results.csv").is_file()
