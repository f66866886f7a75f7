import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import platformdirs
import pytest
import torch

from modularity.infra.cache import ENV_VAR, StatsCache, default_cache_root

PARTS = {
    "model": "EleutherAI/pythia-70m",
    "revision": "step143000",
    "task": "code",
    "split": "train",
    "tokens": 100_000,
    "seed": 0,
    "stats_version": 2,
    "extra": {"dtype": "float32", "layers": [0, 1, 2]},
    "note": None,
}
KEY = StatsCache.key(**PARTS)
# Pinned for a fixed entry format: the canonical JSON and its hash must not drift, or every
# cache entry users already have would be orphaned by an edit that changed no layout.
GOLDEN_KEY = "9b09e4f69c5894bdd9ebaf19"
REPO = Path(__file__).resolve().parents[1]


def stats() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "mean": torch.randn(4, 16, generator=g, dtype=torch.float64),
        "count": torch.arange(4, dtype=torch.int64),
        "bf16": torch.randn(3, generator=g).to(torch.bfloat16),
    }


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.view(torch.int64) if t.dtype == torch.float64 else t.view(torch.int16)


def tmp_dirs(root: Path) -> list[Path]:
    return list(root.glob(".tmp-*"))


def test_roundtrip_is_bit_exact(tmp_path):
    cache = StatsCache(tmp_path)
    tensors = stats()
    special = torch.tensor([float("nan"), float("inf"), -0.0, 5e-324, 1 / 3], dtype=torch.float64)
    tensors["special"] = special
    tensors["strided"] = tensors["mean"][:, ::2]  # non-contiguous view of "mean"
    tensors["row"] = tensors["mean"][1]  # contiguous view: shares storage with "mean"
    path = cache.put(KEY, tensors, PARTS)
    assert path == tmp_path / KEY
    back = cache.get(KEY)
    assert back is not None and back.keys() == tensors.keys()
    for name, t in tensors.items():
        assert back[name].dtype == t.dtype and back[name].shape == t.shape
        if t.dtype in (torch.float64, torch.bfloat16):
            assert torch.equal(bits(back[name].contiguous()), bits(t.contiguous()))
        else:
            assert torch.equal(back[name], t)
    assert tmp_dirs(tmp_path) == []


def test_miss_then_hit_computes_once(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return stats()

    first, hit = StatsCache(tmp_path).get_or_compute(KEY, compute, PARTS)
    assert not hit
    second, hit = StatsCache(tmp_path).get_or_compute(KEY, compute, PARTS)  # a later run
    assert hit and len(calls) == 1
    assert all(torch.equal(first[n], second[n]) for n in first)


def test_failed_compute_leaves_no_entry(tmp_path):
    cache = StatsCache(tmp_path)

    def compute():
        raise RuntimeError("killed midway")

    with pytest.raises(RuntimeError, match="midway"):
        cache.get_or_compute(KEY, compute, PARTS)
    assert cache.get(KEY) is None and not (tmp_path / KEY).exists()


def test_failed_rename_leaves_no_entry(tmp_path, monkeypatch):
    cache = StatsCache(tmp_path)

    def rename(src, dst):
        raise OSError("disk vanished")

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(OSError, match="vanished"):
        cache.put(KEY, stats(), PARTS)
    monkeypatch.undo()
    assert cache.get(KEY) is None
    assert list(tmp_path.iterdir()) == []  # the temporary directory went too


@pytest.mark.slow
def test_killed_writer_leaves_no_entry(tmp_path):
    """SIGKILL a process between writing its files and renaming them into place."""
    marker = tmp_path / "writing"
    root = tmp_path / "cache"
    script = textwrap.dedent(
        f"""
        import os, time, torch
        from modularity.infra.cache import StatsCache

        def stall(src, dst):
            open({str(marker)!r}, "w").close()
            time.sleep(60)

        os.rename = stall
        StatsCache({str(root)!r}).put({KEY!r}, {{"x": torch.ones(3)}}, {{}})
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert proc.poll() is None, "writer exited early"
            assert time.monotonic() < deadline, "writer never reached the rename"
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()
    assert len(tmp_dirs(root)) == 1
    cache = StatsCache(root)  # a fresh run: its writer is dead, so the temp dir goes at once
    assert cache.get(KEY) is None
    assert tmp_dirs(root) == []
    assert cache.put(KEY, stats(), PARTS) == root / KEY


def test_stale_temporary_dirs_pruned_at_construction(tmp_path):
    old = tmp_path / f".tmp-{KEY}-old"
    young = tmp_path / f".tmp-{KEY}-young"
    for d in (old, young):
        d.mkdir()
        (d / "tensors.safetensors").write_bytes(b"partial")
    hour_ago = time.time() - 3700
    os.utime(old, (hour_ago, hour_ago))
    cache = StatsCache(tmp_path)
    assert not old.exists() and young.exists()
    assert cache.get(KEY) is None


def test_concurrent_writer_wins_race(tmp_path, monkeypatch):
    """Another process renames its entry in while this one writes: keep theirs, drop ours."""
    cache = StatsCache(tmp_path)
    theirs = {"x": torch.zeros(2)}
    real_rename = os.rename

    def rename_after_rival(src, dst):
        monkeypatch.setattr(os, "rename", real_rename)
        StatsCache(tmp_path).put(KEY, theirs, {"writer": "rival"})
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename_after_rival)
    assert cache.put(KEY, {"x": torch.ones(2)}, {"writer": "me"}) == tmp_path / KEY
    assert torch.equal(cache.get(KEY)["x"], theirs["x"])
    assert json.loads((tmp_path / KEY / "meta.json").read_text())["meta"] == {"writer": "rival"}
    assert tmp_dirs(tmp_path) == []


def test_parallel_writers(tmp_path):
    errors = []

    def write(i):
        try:
            StatsCache(tmp_path).put(KEY, {"x": torch.full((1000,), float(i))}, {"i": i})
        except Exception as err:  # surfaced below: threads swallow exceptions
            errors.append(err)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    x = StatsCache(tmp_path).get(KEY)["x"]
    assert torch.equal(x, torch.full((1000,), x[0].item()))  # one writer's whole copy
    assert tmp_dirs(tmp_path) == []


def test_existing_entry_is_not_overwritten(tmp_path):
    cache = StatsCache(tmp_path)
    cache.put(KEY, {"x": torch.zeros(2)}, PARTS)
    cache.put(KEY, {"x": torch.ones(2)}, PARTS)
    assert torch.equal(cache.get(KEY)["x"], torch.zeros(2))


@pytest.mark.slow
def test_key_is_stable_across_processes():
    script = textwrap.dedent(
        f"""
        from modularity.infra.cache import StatsCache
        parts = {PARTS!r}
        print(StatsCache.key(**dict(reversed(list(parts.items())))))
        """
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == KEY
    assert len(KEY) == 24 and int(KEY, 16) >= 0


def test_key_of_a_fixed_format_is_pinned(monkeypatch):
    from modularity.infra import cache

    monkeypatch.setattr(cache, "entry_format", lambda: "fixed-format")
    assert StatsCache.key(**dict(reversed(list(PARTS.items())))) == GOLDEN_KEY


@pytest.mark.parametrize(
    "change",
    [
        {"model": "EleutherAI/pythia-160m"},
        {"revision": "step142000"},
        {"task": "math"},
        {"split": "test"},
        {"tokens": 100_001},
        {"tokens": 100_000.0},
        {"seed": 1},
        {"seed": True},
        {"seed": "0"},
        {"stats_version": 3},
        {"extra": {"dtype": "float32", "layers": [0, 2, 1]}},
        {"note": ""},
        {"new_part": None},
    ],
)
def test_key_differs_when_any_part_differs(change):
    assert StatsCache.key(**{**PARTS, **change}) != KEY


def test_key_rejects_non_json_parts():
    with pytest.raises(TypeError, match="Path"):
        StatsCache.key(model=Path("/models/x"))
    with pytest.raises(ValueError):
        StatsCache.key(lr=float("nan"))


def test_bad_keys_rejected(tmp_path):
    cache = StatsCache(tmp_path)
    for bad in ("../escape", "a/b", ".tmp-x", ""):
        with pytest.raises(ValueError, match="invalid cache key"):
            cache.get(bad)


def test_meta_json_is_readable(tmp_path):
    cache = StatsCache(tmp_path)
    cache.put(KEY, stats(), PARTS)
    meta = json.loads((tmp_path / KEY / "meta.json").read_text())
    assert meta["key"] == KEY and meta["meta"] == PARTS
    assert meta["tensors"]["mean"] == {"dtype": "torch.float64", "shape": [4, 16]}


def test_bad_meta_fails_before_computing(tmp_path):
    calls = []
    with pytest.raises(TypeError, match="Path"):
        StatsCache(tmp_path).get_or_compute(KEY, lambda: calls.append(1), {"out": Path("x")})
    assert calls == []


def test_root_from_argument_env_and_default(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    default = Path(platformdirs.user_cache_dir("modularity")) / "stats"
    assert default_cache_root() == default
    assert StatsCache(enabled=False).root == default
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "env"))
    assert StatsCache().root == tmp_path / "env"
    assert StatsCache(tmp_path / "arg").root == tmp_path / "arg"  # the argument wins
    StatsCache().put(KEY, stats(), PARTS)
    assert (tmp_path / "env" / KEY / "tensors.safetensors").is_file()


def test_disabled_cache_never_writes(tmp_path):
    root = tmp_path / "cache"
    cache = StatsCache(root, enabled=False)
    calls = []

    def compute():
        calls.append(1)
        return stats()

    for _ in range(2):
        tensors, hit = cache.get_or_compute(KEY, compute, PARTS)
        assert not hit and tensors.keys() == stats().keys()
    assert len(calls) == 2
    assert cache.put(KEY, stats(), PARTS) is None
    assert not root.exists()


def corrupt_entries(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.name.startswith(".corrupt-"))


@pytest.mark.parametrize("damage", ["garbage", "bit_flip", "truncated", "no_meta"])
def test_a_damaged_entry_is_named_set_aside_and_recomputed(tmp_path, caplog, damage):
    cache = StatsCache(tmp_path)
    cache.put(KEY, stats(), PARTS)
    tensors = tmp_path / KEY / "tensors.safetensors"
    data = bytearray(tensors.read_bytes())
    if damage == "garbage":
        tensors.write_bytes(b"garbage")
    elif damage == "bit_flip":  # still a well-formed file: only the checksum can tell
        data[-3] ^= 0x10
        tensors.write_bytes(bytes(data))
    elif damage == "truncated":
        tensors.write_bytes(bytes(data[: len(data) // 2]))
    else:
        (tmp_path / KEY / "meta.json").unlink()
    with caplog.at_level("WARNING"):
        assert cache.get(KEY) is None
    assert KEY in caplog.text and "corrupt" in caplog.text
    assert len(corrupt_entries(tmp_path)) == 1
    tensors, hit = cache.get_or_compute(KEY, stats, PARTS)
    assert not hit and torch.equal(tensors["mean"], stats()["mean"])
    assert cache.get(KEY) is not None


def test_a_failed_check_is_never_used(tmp_path):
    cache = StatsCache(tmp_path)
    cache.put(KEY, {"mad": torch.tensor([1.0, float("inf")])}, PARTS)

    def finite(tensors):
        if not torch.isfinite(tensors["mad"]).all():
            raise ValueError("mad holds non-finite values")

    assert cache.get(KEY, finite) is None
    fresh, hit = cache.get_or_compute(KEY, lambda: {"mad": torch.ones(2)}, PARTS, finite)
    assert not hit and torch.equal(fresh["mad"], torch.ones(2))


@pytest.mark.parametrize("blocker", ["file", "read_only"])
def test_an_unwritable_cache_is_found_before_computing_and_results_kept(tmp_path, caplog, blocker):
    root = tmp_path / "cache"
    if blocker == "file":
        root.write_text("not a directory")
    else:
        root.mkdir()
        root.chmod(0o500)
    if blocker == "read_only" and os.access(root, os.W_OK):  # root ignores permissions
        pytest.skip("running as a user who can write anywhere")
    with caplog.at_level("WARNING"):
        cache = StatsCache(root)
    assert not cache.writable and "not writable" in caplog.text
    tensors, hit = cache.get_or_compute(KEY, stats, PARTS)
    assert not hit and torch.equal(tensors["mean"], stats()["mean"])


def test_rejects_non_tensors(tmp_path):
    with pytest.raises(TypeError, match="torch.Tensor"):
        StatsCache(tmp_path).put(KEY, {"x": [1, 2]}, PARTS)
    assert StatsCache(tmp_path).get(KEY) is None


def test_a_changed_entry_layout_gives_every_key_a_new_version(monkeypatch) -> None:
    """The cache's own code versions its entries: nobody bumps a format number by hand."""
    from code_edits import pretend_edited

    from modularity.infra import cache

    before = StatsCache.key(task="code", size=512)
    cache.entry_format.cache_clear()
    pretend_edited(monkeypatch, Path(cache.__file__))
    try:
        assert StatsCache.key(task="code", size=512) != before
    finally:
        cache.entry_format.cache_clear()
    monkeypatch.undo()
    assert StatsCache.key(task="code", size=512) == before
