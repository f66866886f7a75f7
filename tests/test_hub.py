"""Hub access without network: a fast probe, one-line errors, local copies never sent to the hub."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import datasets
import pytest
from huggingface_hub import constants as hub_constants
from transformers import AutoConfig

from modularity import hub as hub_module
from modularity.errors import ModularityError
from modularity.hub import hub_access, hub_reachable, is_local_path

REFUSING_ENDPOINT = "http://127.0.0.1:9"  # the discard port: nothing listens, connect is refused


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
    assert hub_constants.HF_HUB_OFFLINE  # the libraries no longer try the network


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
