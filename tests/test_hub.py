"""Hub access without network: a fast probe, one-line errors, local copies never sent to the hub,
and every task's ``hub:`` section reading a local copy laid out like the hub repository."""

from __future__ import annotations

import importlib
import json
import os
import sys
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import datasets
import numpy as np
import pytest
from huggingface_hub import constants as hub_constants
from omegaconf import OmegaConf
from transformers import AutoConfig

from modularity.config import load_task_config
from modularity.data.hub import load_hub_dataset, repository_root, rooted
from modularity.errors import ConfigError, ModularityError
from modularity.infra import hub as hub_module
from modularity.infra.hub import hub_access, hub_reachable, is_local_path

REFUSING_ENDPOINT = "http://127.0.0.1:9"  # the discard port: nothing listens, connect is refused
GITHUB_CODE_COLUMNS = ["code", "repo_name", "path", "license", "size"]
CAMEL_COLUMNS = ["role_1", "topic;", "sub_topic", "message_1", "message_2"]


@pytest.fixture
def no_network(monkeypatch, tmp_path):
    """An unreachable hub, an empty HF cache, and the HF libraries' offline flags restored."""
    monkeypatch.setenv("HF_ENDPOINT", REFUSING_ENDPOINT)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # recorded, so teardown undoes the switch
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", False)
    monkeypatch.setattr(hub_module, "_offline_because", [])


@pytest.fixture
def datasets_cache(monkeypatch, tmp_path):
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "datasets-cache"))


def hub_section(task: str, local_copy: Path) -> dict:
    """A task's real ``hub:`` section, pointed at a local copy of the repository."""
    hub = OmegaConf.to_container(load_task_config(task).hub)
    return {**hub, "dataset": str(local_copy)}


def assert_one_line_naming(err: pytest.ExceptionInfo, name: str) -> None:
    message = str(err.value)
    assert "\n" not in message
    assert repr(name) in message
    assert "offline" in message


# --- the probe


def test_probe_of_a_refusing_endpoint_is_false_and_fast():
    start = time.monotonic()
    assert not hub_reachable(REFUSING_ENDPOINT)
    assert time.monotonic() - start < 3


def test_probe_gives_up_at_its_deadline(monkeypatch):
    monkeypatch.setattr(hub_module.httpx, "head", lambda *a, **k: time.sleep(30))
    start = time.monotonic()
    assert not hub_reachable("http://hangs.invalid", timeout_s=0.5)
    assert time.monotonic() - start < 2


def test_probe_counts_any_http_answer_as_reachable():
    class NotFound(BaseHTTPRequestHandler):
        def do_HEAD(self):  # noqa: N802 (the http.server API)
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert hub_reachable(f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()


# --- models: one line, within seconds


def test_uncached_model_fails_at_once_in_one_line(no_network):
    start = time.monotonic()
    with (
        pytest.raises(ModularityError) as err,
        hub_access("nobody/uncached-model", "model", "model.path"),
    ):
        AutoConfig.from_pretrained("nobody/uncached-model")
    assert time.monotonic() - start < 5
    assert_one_line_naming(err, "nobody/uncached-model")
    assert "model.path=" in str(err.value)
    assert f"{REFUSING_ENDPOINT} cannot be reached" in str(err.value)
    assert not hub_constants.HF_HUB_OFFLINE  # offline for the read only: the process is as it was


def test_a_load_failing_offline_becomes_the_one_line(no_network):
    """A model whose cache entry lacks the files: transformers' offline failure is converted."""
    (Path(hub_constants.HF_HUB_CACHE) / "models--nobody--partial" / "snapshots" / "0").mkdir(
        parents=True
    )
    with pytest.raises(ModularityError) as err, hub_access("nobody/partial", "model", "model.path"):
        AutoConfig.from_pretrained("nobody/partial")
    assert_one_line_naming(err, "nobody/partial")
    assert isinstance(err.value.__cause__, OSError)


def test_hf_hub_offline_skips_the_probe(no_network, monkeypatch):
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub_module, "hub_reachable", lambda *a: pytest.fail("probed"))
    with pytest.raises(ModularityError, match="HF_HUB_OFFLINE"), hub_access("a/b", "model", "m"):
        pass


def test_other_errors_pass_through(monkeypatch):
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub_module, "hub_reachable", lambda *a: True)
    with pytest.raises(ValueError, match="unrelated"), hub_access("a/b", "model", "model.path"):
        raise ValueError("unrelated")


# --- the scoped offline context


def offline_state() -> tuple:
    """Every switch offline_mode touches: the environment and the libraries' globals."""
    return (
        tuple(os.environ.get(name) for name in hub_module.OFFLINE_VARIABLES),
        hub_constants.HF_HUB_OFFLINE,
        datasets.config.HF_HUB_OFFLINE,
        datasets.config.HF_DATASETS_OFFLINE,
    )


def test_offline_mode_switches_every_library_and_restores_them(no_network, monkeypatch):
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "0")
    before = offline_state()
    assert before == (("0", None, "0"), False, False, False)
    with hub_module.offline_mode("testing"):
        assert offline_state() == (("1", "1", "1"), True, True, True)
        assert hub_module.offline_reason() == "testing"
        with hub_module.offline_mode("nested"):
            assert hub_module.offline_reason() == "nested"
        assert hub_module.offline_reason() == "testing"
        assert offline_state() == (("1", "1", "1"), True, True, True)
    assert offline_state() == before
    with pytest.raises(RuntimeError, match="inside"), hub_module.offline_mode("testing"):
        raise RuntimeError("inside")
    assert offline_state() == before
    assert hub_module._offline_because == []


def test_datasets_imported_inside_the_block_gets_its_outside_flags(no_network, monkeypatch):
    """datasets copies the environment when first imported: imported inside the block, its
    flags are set afterwards to what an import outside would have given."""
    original = datasets.config
    monkeypatch.setattr(datasets, "config", original)  # restored with sys.modules
    monkeypatch.delitem(sys.modules, "datasets.config")
    with hub_module.offline_mode("testing"):
        fresh = importlib.import_module("datasets.config")  # reads the block's environment
        assert fresh is not original
        assert fresh.HF_HUB_OFFLINE and fresh.HF_DATASETS_OFFLINE
    assert not fresh.HF_HUB_OFFLINE and not fresh.HF_DATASETS_OFFLINE


def test_a_hub_read_without_network_is_offline_only_inside_the_block(no_network):
    (Path(hub_constants.HF_HUB_CACHE) / "models--nobody--cached" / "snapshots" / "0").mkdir(
        parents=True
    )
    before = offline_state()
    with hub_access("nobody/cached", "model", "model.path"):
        assert hub_constants.HF_HUB_OFFLINE and os.environ["HF_HUB_OFFLINE"] == "1"
    assert offline_state() == before


# --- local paths


def test_a_local_path_is_never_a_hub_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "org" / "name").mkdir(parents=True)
    for local in (str(tmp_path), "org/name", "./x", "../x", "~/x", "/no/such/dir"):
        assert is_local_path(local), local
    assert not is_local_path("mistralai/Mistral-7B-Instruct-v0.2")


def test_local_path_is_read_without_probe_or_conversion(tmp_path, monkeypatch):
    monkeypatch.setattr(hub_module, "hub_reachable", lambda *a: pytest.fail("probed"))
    with pytest.raises(FileNotFoundError), hub_access(str(tmp_path), "model", "model.path"):
        raise FileNotFoundError("config.json")


# --- datasets: the task configs read local copies laid out like the hub


def test_github_code_shards_load_with_their_columns_and_python_filter(tmp_path):
    (tmp_path / "data").mkdir()
    datasets.Dataset.from_dict(
        {
            "code": ["print(1)\n", "int x;\n", "x = 2\n"],
            "repo_name": ["a/b", "c/d", "e/f"],
            "path": ["pkg/y.py", "src/z.c", "w.py"],
            "license": ["mit", "mit", "apache-2.0"],
            "size": [9, 7, 6],
        }
    ).to_parquet(tmp_path / "data" / "train-00000-of-00880.parquet")
    code = load_hub_dataset(hub_section("code", tmp_path), "train", streaming=True)
    assert code.column_names == GITHUB_CODE_COLUMNS
    assert len(list(code)) == 3
    python = load_hub_dataset(hub_section("python", tmp_path), "train", streaming=True)
    assert [row["path"] for row in python] == ["pkg/y.py", "w.py"]


@pytest.mark.parametrize("task", ["biology", "chemistry", "physics", "math"])
def test_camel_zip_of_json_loads_without_script(task, tmp_path):
    with zipfile.ZipFile(tmp_path / f"{task}.zip", "w") as archive:
        for i in range(3):
            record = dict(zip(CAMEL_COLUMNS, ["Expert", "Topic", "Sub", f"q{i}", f"a{i}"]))
            archive.writestr(f"{i:03d}_001_001.json", json.dumps(record, indent=4))
    data = load_hub_dataset(hub_section(task, tmp_path), "train", streaming=True)
    assert data.column_names == CAMEL_COLUMNS
    assert sorted(row["message_2"] for row in data) == ["a0", "a1", "a2"]


def test_cifar100_parquet_keeps_its_superclass_names(tmp_path, datasets_cache):
    names = ["aquatic_mammals", "fish"]
    features = datasets.Features(
        {
            "img": datasets.Image(),
            "fine_label": datasets.ClassLabel(names=["beaver", "trout"]),
            "coarse_label": datasets.ClassLabel(names=names),
        }
    )
    images = [np.full((32, 32, 3), i, dtype=np.uint8) for i in range(2)]
    (tmp_path / "cifar100").mkdir()
    for split in ("train", "test"):
        datasets.Dataset.from_dict(
            {"img": images, "fine_label": [0, 1], "coarse_label": [0, 1]}, features=features
        ).to_parquet(tmp_path / "cifar100" / f"{split}-00000-of-00001.parquet")
    test = load_hub_dataset(hub_section("cifar100", tmp_path), "test")
    assert test.features["coarse_label"].names == names
    assert test[0]["img"].size == (32, 32)


def test_minipile_parquet_loads_by_directory(tmp_path, datasets_cache):
    (tmp_path / "data").mkdir()
    datasets.Dataset.from_dict({"text": ["one document", "another"]}).to_parquet(
        tmp_path / "data" / "train-00000-of-00001.parquet"
    )
    data = load_hub_dataset(hub_section("pile", tmp_path), "train")
    assert data["text"] == ["one document", "another"]


def test_a_missing_column_is_named_with_the_columns_there(tmp_path, datasets_cache):
    (tmp_path / "data").mkdir()
    datasets.Dataset.from_dict({"text": ["x"]}).to_parquet(tmp_path / "data" / "train.parquet")
    with pytest.raises(ConfigError, match=r"no column 'message_2'; its columns: text"):
        load_hub_dataset({"dataset": str(tmp_path), "field": "message_2"}, "train")


def test_data_files_are_rooted_at_the_repository_revision():
    root = repository_root("org/data", "refs/convert/parquet")
    assert root == "hf://datasets/org/data@refs%2Fconvert%2Fparquet"
    assert rooted(root, "default/train/*.parquet") == f"{root}/default/train/*.parquet"
    assert rooted("/copy", {"test": ["a/*.parquet"]}) == {"test": ["/copy/a/*.parquet"]}


@pytest.mark.parametrize("task", ["code", "python", "pile", "biology", "cifar100"])
def test_hub_dataset_offline_fails_at_once_in_one_line(task, no_network):
    hub = load_task_config(task).hub
    start = time.monotonic()
    with pytest.raises(ModularityError) as err:
        load_hub_dataset(hub, "train", streaming=task != "cifar100")
    assert time.monotonic() - start < 5
    assert_one_line_naming(err, hub.dataset)
    assert "task.hub.dataset=DIR" in str(err.value)
