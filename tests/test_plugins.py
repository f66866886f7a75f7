"""Plug-ins declared outside this package are found from one place: a temporary package
declares a scorer, a site, a model adapter, an analysis and a data source (each one module,
at most one YAML each, and a line of package metadata), the command line runs them all,
``modularity.report`` (another process) draws the analysis's figures and ``summary.md``
writes its section; one failing plug-in does not stop the others."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pandas as pd
import pytest
from cli import ROOT, SMALL
from test_sources import OUTSIDE_SOURCE

from modularity.analyses.base import import_recorded_analysis
from modularity.summary import write_summary

PLUGIN = '''
"""A plug-in analysis outside modularity: how many tasks a run names."""
from dataclasses import dataclass
from modularity.analyses.base import Analysis, Row


@dataclass
class TaskCount(Analysis):
    weight: float = 2.0

    def run(self, ctx):
        return [Row(metric="task_count", value=self.weight * (1 + len(ctx.cfg.tasks)))]

    @classmethod
    def summary(cls, rows):
        return [f"task_count {rows['value'].iloc[0]:g}"]

    @classmethod
    def figures(cls, rows, out):
        path = out / "task_count.txt"
        path.write_text(str(len(rows)))
        return [path]
'''


def test_one_failing_summary_does_not_stop_the_others(tmp_path, monkeypatch):
    import importlib

    package = tmp_path / "plugins" / "extpkg2"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "counting.py").write_text(textwrap.dedent(PLUGIN))
    (package / "broken.py").write_text(
        "from modularity.analyses.base import Analysis\n"
        "class Broken(Analysis):\n"
        "    @classmethod\n"
        "    def summary(cls, rows):\n"
        "        raise RuntimeError('plug-in bug')\n"
    )
    monkeypatch.syspath_prepend(str(package.parent))
    importlib.import_module("extpkg2.counting")
    importlib.import_module("extpkg2.broken")
    rows = pd.DataFrame({"model": ["m", "m"], "analysis": ["broken", "counting"], "value": [1, 2]})
    text = write_summary(rows, tmp_path, {}, 1.0, "t").read_text()
    assert "task_count 2" in text
    assert "## Steps that failed" in text
    assert "`summary of broken (m)`: RuntimeError: plug-in bug" in text


# --------------------------------------------------------------------------- one of each

# Each plug-in: one module, at most one YAML. The package declares them in its metadata
# (entry points: scorers, sites, adapters) and ships its configs through a Hydra search-path
# plug-in, as an installed package would.
OUTSIDE_PACKAGE = {
    "extplug/__init__.py": "",
    # A scorer: spread on the task over mean |x| on the reference.
    "extplug/spread.py": """
        def spread(task, reference, eps, seed):
            return task.std / (reference.abs_mean + eps)
    """,
    # A site: the residual dimensions the MLP's up projection reads (its input columns).
    "extplug/up_input.py": """
        from dataclasses import dataclass

        from modularity.neurons.sites import Site


        @dataclass(frozen=True)
        class UpInputSite(Site):
            reader = "the MLP's up projection"

            def module(self, adapter, layer):
                return adapter.blocks[layer].get_submodule(adapter.layout.up)

            def parameter_name(self, adapter, layer, tensor):
                return adapter.parameter_name(layer, "up", tensor)

            def width(self, adapter):
                return adapter.input_weight(0).shape[1]

            def unit_parameters(self, adapter):
                return adapter.input_weight(0).shape[0]


        UP_INPUT = UpInputSite("up_in", noun="MLP inputs")
    """,
    # A model adapter: OLMo, a family this package does not know, laid out like Llama.
    "extplug/olmo.py": """
        from modularity.models.adapter import ModelAdapter
        from modularity.models.llama import LlamaAdapter


        class OlmoAdapter(ModelAdapter):
            model_types = ("olmo",)
            kind = "causal_lm"
            layouts = LlamaAdapter.layouts
    """,
    "extplug/conf/model/tiny_olmo.yaml": """
        name: tiny_olmo
        tokenizer: bytes
        hf_config:
          model_type: olmo
          vocab_size: 259
          hidden_size: 32
          intermediate_size: 64
          num_hidden_layers: 2
          num_attention_heads: 4
          num_key_value_heads: 2
          max_position_embeddings: 128
          pad_token_id: 0
          bos_token_id: null
          eos_token_id: 1
    """,
    # An analysis: selective pruning, plus a row saying how wide the site's layers are.
    "extplug/widths.py": """
        from dataclasses import dataclass

        from modularity.analyses.base import Row
        from modularity.analyses.prune import Prune
        from modularity.neurons.sites import site_of


        @dataclass
        class PruneWithWidth(Prune):
            label: str = "units per layer"

            def run(self, ctx):
                width = site_of(ctx.cfg.site).width(ctx.pipeline.adapter)
                return [*super().run(ctx), Row("site_width", float(width), label=self.label)]

            @classmethod
            def summary(cls, rows):
                width = rows.loc[rows["metric"] == "site_width", "value"].iloc[0]
                return [f"site width {width:g}"]

            @classmethod
            def figures(cls, rows, out):
                path = out / "site_width.txt"
                path.write_text(str(sorted(set(rows["site"]))))
                return [path]
    """,
    "extplug/conf/analysis/prune_with_width.yaml": """
        _target_: extplug.widths.PruneWithWidth
        label: residual dimensions per layer
    """,
    # A data source: numbered sentences, its domains the hundreds; two tasks read it.
    "extplug/counting.py": OUTSIDE_SOURCE,  # the source test_sources.py runs in-process
    "extplug/conf/task/counts.yaml": """
        name: counts
        kind: text
        reference: all_counts
        source: local
        local:
          _target_: extplug.counting.Counting
          n: 600
          skip: [1, 2, 3, 4, 5]
        hub: {}
    """,
    "extplug/conf/task/all_counts.yaml": """
        name: all_counts
        kind: text
        reference: all_counts
        source: local
        local:
          _target_: extplug.counting.Counting
          n: 600
        hub: {}
    """,
    "hydra_plugins/extplug_conf/__init__.py": """
        from hydra.core.config_search_path import ConfigSearchPath
        from hydra.plugins.search_path_plugin import SearchPathPlugin


        class ExtplugConf(SearchPathPlugin):
            def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
                search_path.append(provider="extplug", path="pkg://extplug.conf")
    """,
    "extplug-0.1.dist-info/METADATA": "Metadata-Version: 2.1\nName: extplug\nVersion: 0.1\n",
    "extplug-0.1.dist-info/entry_points.txt": """
        [modularity.scorers]
        spread = extplug.spread:spread

        [modularity.sites]
        up_in = extplug.up_input:UP_INPUT

        [modularity.adapters]
        olmo = extplug.olmo:OlmoAdapter
    """,
}


def write_package(root, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())


@pytest.mark.slow
def test_one_of_each_plugin_from_an_outside_package_runs_and_reports(tmp_path, monkeypatch):
    packages = tmp_path / "site-packages"
    write_package(packages, OUTSIDE_PACKAGE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(packages), str(ROOT)])}
    env |= {"HF_HUB_OFFLINE": "1", "MODULARITY_CACHE_DIR": str(tmp_path / "cache")}
    run_dir = tmp_path / "run"
    overrides = [
        "model=tiny_olmo",  # the adapter, and the model YAML from the package's search path
        "analysis=prune_with_width",
        "site=up_in",
        "scoring.scorer=spread",
        "task=counts",  # the source, and the task YAML from the package's search path
        "data.exclude_from_reference=domain",  # the source's own without(): hundreds 1-5
        f"hydra.run.dir={run_dir}",
        *SMALL,
        "data.collect_size=512",
        "data.eval_size=512",
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "modularity.run", *overrides],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    rows = pd.read_csv(run_dir / "results.csv")
    assert set(rows["analysis"]) == {"widths"}
    assert set(rows["site"]) == {"up_in"} and set(rows["scorer"]) == {"spread"}
    assert set(rows["model"]) == {"tiny_olmo"} and set(rows["task"].dropna()) == {"counts"}
    assert set(rows["reference_excludes"]) == {"domain"}
    width = rows[rows["metric"] == "site_width"]
    assert width["value"].tolist() == [32.0]  # hidden_size: the up projection's inputs
    assert width["label"].tolist() == ["residual dimensions per layer"]  # the YAML's value
    assert "drop" in set(rows["metric"])  # the pruning it extends ran on that site

    report = subprocess.run(
        [sys.executable, "-m", "modularity.report", str(run_dir)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert report.returncode == 0, report.stderr[-2000:]
    assert (run_dir / "site_width.txt").read_text() == "['up_in']"
    reported = pd.read_csv(run_dir / "report.csv")
    assert len(reported) == len(rows)

    monkeypatch.syspath_prepend(str(packages))
    import_recorded_analysis(run_dir)  # as report() does before the summary is written
    summary = write_summary(reported, tmp_path, {}, 1.0, "plugins").read_text()
    assert "site width 32" in summary
