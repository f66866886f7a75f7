"""Save a pruned model as a plain Hugging Face checkpoint (``python -m modularity.export``).

The checkpoint loads with ``AutoModelFor*.from_pretrained`` alone (no hooks, no modularity)
and computes what the masked model computes. When every layer loses the same number of
neurons (some, not all) the MLP is cut: those rows of the up (and gate) projection and of
their biases, those columns of the down projection, and a smaller MLP width in the config,
so the file shrinks. Otherwise the architecture stays and the pruned neurons' output
weights are zeroed.

Mean ablation replaces a neuron by a constant, its reference mean, so ``W_out[:, j] *
mean_j`` moves into the down projection's bias. Families without that bias get one from
their config switch where there is one (Llama's ``mlp_bias``, with zero biases on the other
projections); the others are refused.

Every other site (``site=attn``, ``site=heads``, a plug-in's) is exported with the same
shapes: the pruned units' input columns of the projection that reads them (the attention
output projection for attention sites) are zeroed (a head's whole slice for heads), and mean
ablation moves ``W[:, j] * mean_j`` into that projection's bias, refused where it
has none. The report says ``zeroed``.

The user's model is never changed: the checkpoint is a new model, built on the meta device,
whose untouched tensors are the user's own (shared, only read) and whose pruned ones are new.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from modularity.analyses.base import short_name
from modularity.config import AblationMode, ModelConfig, checked_choice
from modularity.errors import ModularityError
from modularity.infra.artefacts import (
    OutputError,
    check_free_space,
    verify_run_dir,
    writable_directory,
)
from modularity.infra.atomic import atomic_directory
from modularity.models.adapter import ModelAdapter
from modularity.models.loading import load_model, stored_dtype
from modularity.neurons.sites import check_unit_mask, column_mask, site_of

Structure = Literal["structural", "zeroed"]
REPORT_FILE = "export.json"


@dataclass(frozen=True)
class ExportReport:
    """What an export wrote. Parameters and weight bytes count the checkpoint's tensors (tied
    ones once); ``checkpoint_bytes`` is every file written but this report."""

    out_dir: str
    structure: Structure  # structural: a narrower MLP; zeroed: same shapes
    mode: str  # zero | mean
    n_layers: int
    width_before: int  # MLP neurons per layer
    width_after: int
    neurons_pruned: int  # over all layers
    params_before: int
    params_after: int
    weight_bytes_before: int
    weight_bytes_after: int
    checkpoint_bytes: int
    site: str = "mlp"  # mlp | attn | heads: the units counted above

    def summary(self) -> str:
        """A few lines for the terminal."""
        if self.site != "mlp":
            total = self.n_layers * self.width_before
            units = site_of(self.site)
            what = (
                f"{self.neurons_pruned} of {total} {units.noun} zeroed (their input columns of "
                f"{units.reader}), shapes unchanged"
            )
        elif self.structure == "structural":
            what = (
                f"{self.width_before - self.width_after} of {self.width_before} neurons cut "
                f"from each of {self.n_layers} layers (MLP width {self.width_after})"
            )
        else:
            total = self.n_layers * self.width_before
            what = f"{self.neurons_pruned} of {total} neurons zeroed, shapes unchanged"
        return "\n".join(
            [
                f"{self.structure} checkpoint ({self.mode} ablation) in {self.out_dir}: {what}",
                f"parameters: {self.params_before:,} -> {self.params_after:,} "
                f"({_change(self.params_before, self.params_after)})",
                f"weights: {_mb(self.weight_bytes_before)} -> {_mb(self.weight_bytes_after)} "
                f"({_change(self.weight_bytes_before, self.weight_bytes_after)}); "
                f"all files {_mb(self.checkpoint_bytes)}",
            ]
        )


def export_pruned(
    model: nn.Module,
    mask: torch.Tensor,
    out_dir: str | os.PathLike,
    mode: str = "zero",
    means: torch.Tensor | None = None,
    tokenizer: Any = None,
    image_processor: Any = None,
    site: str = "mlp",
    adapter: ModelAdapter | None = None,
) -> ExportReport:
    """Write ``model`` with the units of ``site`` in ``mask`` (``[layers, units]`` bool) ablated.

    ``mode`` is ``zero`` or ``mean`` (``means``: ``[layers, columns]`` of the site's module
    input, the values the masked units are replaced by; for heads the attention neurons'
    means). ``out_dir`` must not exist or be empty; it appears whole or not at all. The
    tokenizer or image processor, if given, is saved beside the weights. ``adapter`` is
    needed only for a family known through a config layout (``LoadedModel.adapter``).
    """
    adapter = adapter or ModelAdapter.for_model(model)
    if getattr(model, "is_quantized", False):
        raise ModularityError("cannot export a quantised model; load it in float or bf16")
    width = site_of(site).width(adapter)
    mask = check_unit_mask(adapter, site, mask).cpu()
    means = checked_means(mode, means, adapter, column_mask(adapter, site, mask).shape[1])
    target = _empty_target(Path(out_dir))

    state = dict(model.state_dict())
    config = copy.deepcopy(model.config)
    counts = mask.sum(dim=1)
    mlp = site == "mlp"
    structural = (
        mlp
        and adapter.width_attribute is not None
        and bool((counts == counts[0]).all())
        and 0 < int(counts[0]) < width
    )
    if means is not None and mlp:
        _ensure_output_biases(adapter, state, config)
    columns = column_mask(adapter, site, mask)
    for layer in range(adapter.n_layers):
        layer_means = None if means is None else means[layer]
        if mlp:
            _prune_layer(adapter, state, layer, mask[layer], structural, layer_means)
        else:
            _zero_input_columns(adapter, site, state, layer, columns[layer], layer_means)
    width_after = width - int(counts[0]) if structural else width
    if structural:
        setattr(config, adapter.width_attribute, width_after)

    pruned = _model_with(model, config, state)
    check_free_space(
        target.parent, sum(_nbytes(t) for t in _unique(state.values())), "the checkpoint"
    )
    try:
        with atomic_directory(target) as tmp:
            pruned.save_pretrained(tmp)
            for processor in (tokenizer, image_processor):
                if processor is not None:
                    processor.save_pretrained(tmp)
            original = model.state_dict().values()
            report = ExportReport(
                out_dir=str(target),
                structure="structural" if structural else "zeroed",
                mode=mode,
                n_layers=adapter.n_layers,
                width_before=width,
                width_after=width_after,
                neurons_pruned=int(counts.sum()),
                params_before=sum(t.numel() for t in _unique(original)),
                params_after=sum(t.numel() for t in _unique(state.values())),
                weight_bytes_before=sum(_nbytes(t) for t in _unique(original)),
                weight_bytes_after=sum(_nbytes(t) for t in _unique(state.values())),
                checkpoint_bytes=sum(f.stat().st_size for f in tmp.rglob("*") if f.is_file()),
                site=site,
            )
            (tmp / REPORT_FILE).write_text(json.dumps(asdict(report), indent=2) + "\n")
    except OSError as err:  # a full disk: nothing is left behind, and the line says where
        raise OutputError(f"cannot write the checkpoint {target}: {err.strerror or err}") from err
    return report


def checked_means(mode: str, means: Any, adapter: ModelAdapter, width: int) -> torch.Tensor | None:
    """The means ``mode`` needs (None for zero ablation), checked against the model."""
    if checked_choice(AblationMode, mode, "ablation mode") == "zero":
        if means is not None:
            raise ModularityError("means are only used by mean ablation (mode='mean')")
        return None
    if means is None:
        raise ModularityError("mean ablation needs the reference means, [layers, neurons]")
    means = torch.as_tensor(means, dtype=torch.float64).cpu()
    if tuple(means.shape) != (adapter.n_layers, width):
        raise ModularityError(
            f"the means have shape {list(means.shape)}, but the model has [layers, neurons] = "
            f"{[adapter.n_layers, width]}"
        )
    if not torch.isfinite(means).all():
        raise ModularityError("the means must be finite")
    return means


def _empty_target(target: Path) -> Path:
    """``target`` if it can become the checkpoint: new or empty, in a writable directory
    (checked before a model is loaded or pruned)."""
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ModularityError(f"{target} exists and is not an empty directory; pick a new one")
    writable_directory(target.parent, "export directory's parent")
    return target


def _ensure_output_biases(adapter: ModelAdapter, state: dict, config: Any) -> None:
    """Give every MLP projection a bias (zeros) where the family has none, for the means."""
    if adapter.parameter_name(0, "down", "bias") in state:
        return
    switch = adapter.mlp_bias_switch
    if switch is None:
        raise ModularityError(
            f"mean ablation cannot be exported for {config.model_type}: its MLP has no output "
            "bias to hold the pruned neurons' means, and no config switch adds one; export "
            "zero ablation instead"
        )
    setattr(config, switch, True)
    for layer in range(adapter.n_layers):
        for projection in adapter.projection_paths():
            weight = state[adapter.parameter_name(layer, projection, "weight")]
            neuron_axis = adapter.neuron_axis(projection)
            out_axis = 1 - neuron_axis if projection == "down" else neuron_axis
            state[adapter.parameter_name(layer, projection, "bias")] = weight.new_zeros(
                weight.shape[out_axis]
            )


def _prune_layer(
    adapter: ModelAdapter,
    state: dict[str, torch.Tensor],
    layer: int,
    pruned: torch.Tensor,
    structural: bool,
    means: torch.Tensor | None,
) -> None:
    """Replace ``layer``'s MLP tensors in ``state`` by pruned copies (never in place)."""
    if not pruned.any():
        return
    down_name = adapter.parameter_name(layer, "down", "weight")
    down, down_axis = state[down_name], adapter.neuron_axis("down")
    dropped = pruned.nonzero().squeeze(1).to(down.device)
    if means is not None:
        bias_name = adapter.parameter_name(layer, "down", "bias")
        w_out = down.index_select(down_axis, dropped).double().movedim(down_axis, -1)
        shift = w_out @ means[pruned].to(down.device)  # [d_model]
        state[bias_name] = (state[bias_name].double() + shift).to(state[bias_name].dtype)
    if not structural:
        state[down_name] = down.index_fill(down_axis, dropped, 0)
        return
    kept = (~pruned).nonzero().squeeze(1).to(down.device)
    for projection in adapter.projection_paths():
        weight_name = adapter.parameter_name(layer, projection, "weight")
        state[weight_name] = state[weight_name].index_select(adapter.neuron_axis(projection), kept)
        bias_name = adapter.parameter_name(layer, projection, "bias")
        if projection != "down" and bias_name in state:
            state[bias_name] = state[bias_name].index_select(0, kept)


def _zero_input_columns(
    adapter: ModelAdapter,
    site: str,
    state: dict[str, torch.Tensor],
    layer: int,
    pruned: torch.Tensor,
    means: torch.Tensor | None,
) -> None:
    """Zero the input columns ``pruned`` of the projection that reads ``site`` in ``layer``
    (new tensors in ``state``), folding ``W[:, j] * mean_j`` into its bias for mean ablation."""
    if not pruned.any():
        return
    units = site_of(site)
    weight_name = units.parameter_name(adapter, layer, "weight")
    weight, axis = state[weight_name], adapter.input_axis
    dropped = pruned.nonzero().squeeze(1).to(weight.device)
    if means is not None:
        bias_name = units.parameter_name(adapter, layer, "bias")
        if bias_name not in state:
            raise ModularityError(
                f"mean ablation of {units.noun} cannot be exported for "
                f"{adapter.model.config.model_type}: {units.reader} has no bias to hold their "
                "means; export zero ablation instead"
            )
        w_out = weight.index_select(axis, dropped).double().movedim(axis, -1)
        shift = w_out @ means[pruned].to(weight.device)  # [d_model]
        state[bias_name] = (state[bias_name].double() + shift).to(state[bias_name].dtype)
    state[weight_name] = weight.index_fill(axis, dropped, 0)


def _model_with(model: nn.Module, config: Any, state: dict[str, torch.Tensor]) -> nn.Module:
    """A model of ``model``'s class built from ``config`` and holding ``state``, without
    allocating (meta device) or initialising weights it would then overwrite."""
    with torch.device("meta"):
        pruned = type(model)(config)
    pruned.load_state_dict(state, strict=True, assign=True)
    if getattr(model, "generation_config", None) is not None:
        pruned.generation_config = copy.deepcopy(model.generation_config)
    return pruned


def _unique(tensors: Iterable[torch.Tensor]) -> list[torch.Tensor]:
    """The tensors with tied ones (same memory and shape) once."""
    seen: dict[tuple, torch.Tensor] = {}
    for t in tensors:
        seen.setdefault((t.device, t.data_ptr(), t.dtype, tuple(t.shape)), t)
    return list(seen.values())


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def _change(before: int, after: int) -> str:
    return f"{100 * (after - before) / before:+.1f}%" if before else "n/a"


def _mb(n_bytes: int) -> str:
    return f"{n_bytes / 1e6:.2f} MB"


# ------------------------------------------------------------------------ run directories


def export_run(
    run_dir: str | os.PathLike, out_dir: str | os.PathLike, means: torch.Tensor | None = None
) -> ExportReport:
    """Export the pruned model of a pruning run directory (``analysis=prune``), in the
    dtype its source checkpoint stores (a float16 model gives a float16 checkpoint).

    Reads the mask (and, for mean ablation, the reference means) from
    ``scores.safetensors`` and the model and ablation mode from ``.hydra/config.yaml``;
    ``means`` (``[layers, neurons]``) replaces the stored ones.
    """
    run = Path(run_dir)
    if not run.is_dir():
        raise ModularityError(f"{run} is not a directory; give a pruning run's directory")
    config_path = run / ".hydra" / "config.yaml"
    cfg = _run_config(config_path)
    target = str(OmegaConf.select(cfg, "analysis._target_", default=""))
    if target and not target.startswith("modularity.analyses.prune."):
        raise ModularityError(
            f"{run} is an analysis={short_name(target)} run, not a pruning run; export needs the "
            "directory of an analysis=prune run (it holds the mask)"
        )
    verify_run_dir(run)
    _empty_target(Path(out_dir))  # before the model loads
    mask = _run_tensor(run / "scores.safetensors", "mask")
    mode = str(OmegaConf.select(cfg, "ablation.mode", default="zero"))
    if mode == "mean" and means is None:
        stored = load_file(run / "scores.safetensors")
        if "means" not in stored:
            raise ModularityError(
                f"{run} used mean ablation but stores no reference means (a run made before "
                "they were saved); pass them: --means FILE (a safetensors file with 'means')"
            )
        means = stored["means"]
    site = str(OmegaConf.select(cfg, "site", default="mlp"))
    model_cfg = _model_config(cfg, config_path)
    source = stored_dtype(model_cfg)
    if source is not None:  # the checkpoint's own precision, whatever the run computed in
        model_cfg.dtype = source
    loaded = load_model(model_cfg)
    return export_pruned(
        loaded.model,
        mask,
        out_dir,
        mode,
        means,
        loaded.tokenizer,
        loaded.image_processor,
        site,
        loaded.adapter,
    )


def _run_tensor(path: Path, name: str) -> torch.Tensor:
    """Tensor ``name`` of a safetensors file, or a one-line error saying what is wrong."""
    if not path.is_file():
        raise ModularityError(f"{path} is missing")
    try:
        tensors = load_file(path)
    except (OSError, SafetensorError) as err:
        raise ModularityError(f"cannot read {path}: {err}".splitlines()[0]) from err
    if name not in tensors:
        raise ModularityError(f"{path} holds no tensor {name!r} (it has {sorted(tensors)})")
    return tensors[name]


def _run_config(path: Path) -> DictConfig:
    if not path.is_file():
        raise ModularityError(f"{path} is missing; is {path.parent.parent} a run directory?")
    try:
        cfg = OmegaConf.load(path)
    except Exception as err:  # YAML errors have many classes; any of them is a bad file
        raise ModularityError(f"cannot read {path}: {err}".splitlines()[0]) from err
    if not isinstance(cfg, DictConfig):
        raise ModularityError(f"{path} is not a run config (a mapping)")
    return cfg


def _model_config(cfg: DictConfig, path: Path) -> DictConfig:
    """The run's ``model`` node on the ``ModelConfig`` schema."""
    if cfg.get("model") is None:
        raise ModularityError(f"{path} names no model")
    try:
        return OmegaConf.merge(OmegaConf.structured(ModelConfig), cfg.model)
    except OmegaConfBaseException as err:
        raise ModularityError(f"{path}: bad model node: {err}".splitlines()[0]) from err


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m modularity.export RUN_DIR OUT_DIR [--means FILE]``; exit 2 on bad input."""
    parser = argparse.ArgumentParser(
        prog="python -m modularity.export",
        description="Write a pruning run's pruned model as a plain Hugging Face checkpoint.",
    )
    parser.add_argument("run_dir", help="a pruning run directory (analysis=prune)")
    parser.add_argument("out_dir", help="a new (or empty) directory for the checkpoint")
    parser.add_argument(
        "--means", help="mean ablation: a safetensors file with 'means' (default: the run's)"
    )
    args = parser.parse_args(argv)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        means = _run_tensor(Path(args.means), "means") if args.means else None
        report = export_run(args.run_dir, args.out_dir, means)
    except ModularityError as err:
        if os.environ.get("MODULARITY_DEBUG"):
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
