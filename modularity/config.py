"""Structured config schemas, registered with Hydra's ConfigStore.

The YAML files under ``conf/`` extend these schemas, so a misspelt key fails at composition
instead of being silently ignored. ``conf/`` sits at the repository root beside the package,
as in lightning-hydra-template; the package is installed editable from a clone (``make``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from omegaconf import MISSING, DictConfig, OmegaConf

from modularity.errors import ConfigError, invalid_choice

CONF_DIR = Path(__file__).resolve().parent / "conf"
DEFAULT_MODEL = "tiny_lm_text"  # `python -m modularity.run` without `+model=`: trained, shipped


@dataclass
class ModelConfig:
    """Which network to analyse and how to load it."""

    name: str = MISSING
    path: str | None = None  # hub id or local directory
    builtin: str | None = None  # a small model trained by the project (modularity.zoo.train)
    hf_config: dict[str, Any] | None = None  # build from an HF config dict (no download)
    tokenizer: str | None = None  # hub id or directory; "bytes" for a byte-level one
    init: str = "pretrained"  # pretrained | random (the random-initialisation twin)
    seed: int = 0  # seed of the random twin's initialisation
    dtype: str = "float32"  # float32 | bfloat16 | float16
    revision: str | None = None
    gguf_file: str | None = None  # a GGUF file inside `path`, de-quantised once and cached
    quantization: str | None = None  # 8bit | 4bit (bitsandbytes, GPU only)
    batch_size: int = 8
    # Tiny models: the text task's defaults (block_size) are capped at this context length.
    max_length: int | None = None


@dataclass
class TaskConfig:
    """A named data source, its split and label filter, and the reference it is scored against."""

    name: str = MISSING
    kind: str = "text"  # text | image
    description: str = ""
    reference: str | None = None  # name of the reference task config
    source: str = "local"  # local | hub
    local: dict[str, Any] = field(default_factory=dict)  # text: {corpus: code}; image: {image_set}
    hub: dict[str, Any] = field(default_factory=dict)  # {dataset, name, split, field, ...}
    classes: list[str] | None = None  # image tasks: class or superclass names to keep
    block_size: int = 128  # text: tokens per packed block
    collect_size: int = 65536  # tokens (text) or images used to collect statistics
    eval_size: int = 32768  # tokens (text) or images held out for evaluation
    seed: int = 0  # seed of the split assignment


@dataclass
class DataConfig:
    """Sizes applied to every task of a run (the main task, its reference, ``tasks``);
    null keeps each task's own."""

    collect_size: int | None = None
    eval_size: int | None = None
    block_size: int | None = None
    source: str | None = None  # local | hub: where every task reads its data


@dataclass
class SelectionConfig:
    fraction: float = 0.05  # share of neurons to select, in (0, 1]
    scope: str = "layer"  # layer: top fraction of each layer; global: of all layers together


@dataclass
class ScoringConfig:
    scorer: str = "mad"  # mad | abs | std | rms | freq | mean | random
    eps: float = 1e-6
    seed: int = 0  # for the random scorer


@dataclass
class AblationConfig:
    mode: str = "zero"  # zero | mean (replace by the reference mean)


@dataclass
class TrainerConfig:
    """Lightning Trainer options for collection and evaluation loops."""

    accelerator: str = "auto"
    devices: Any = 1
    strategy: str = "auto"
    precision: str = "32-true"
    progress_bar: bool = True


@dataclass
class CacheConfig:
    enabled: bool = True
    dir: str | None = None  # default: $MODULARITY_CACHE_DIR or the user cache dir


@dataclass
class MoefyConfig:
    experts: int = 32
    weights: str = "up"  # up | gate | concat (gated MLPs)
    n_iter: int = 20
    n_null: int = 1000
    top_k: int = 1


@dataclass
class MatchConfig:
    target_ratio: float = 0.8  # task top-1 after pruning / before
    tolerance: float = 0.02
    max_fraction: float = 0.5
    max_steps: int = 12


@dataclass
class Config:
    model: ModelConfig | None = None  # None: DEFAULT_MODEL
    task: TaskConfig = MISSING
    tasks: list[str] = field(default_factory=list)  # overlap / match: tasks to compare
    analysis: Any = MISSING
    layers: list[int] | None = None  # layer subset; None = all layers
    data: DataConfig = field(default_factory=DataConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    ablation: AblationConfig = field(default_factory=AblationConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    moefy: MoefyConfig = field(default_factory=MoefyConfig)
    match: MatchConfig = field(default_factory=MatchConfig)
    compare_random: bool = False
    logger: Any = None
    seed: int = 0
    output_dir: str = "."


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    cs.store(group="model", name="model_schema", node=ModelConfig)
    cs.store(group="task", name="task_schema", node=TaskConfig)


def compose_config(overrides: Sequence[str] = (), hydra: bool = False) -> DictConfig:
    """Compose ``conf/config.yaml`` with ``overrides`` outside a Hydra app (``make run``,
    tests); ``hydra=True`` keeps the ``hydra`` node (e.g. an experiment's sweep params)."""
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=hydra)


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def _group_yaml(group: str, name: str) -> DictConfig:
    """A group option with its same-group defaults merged in (``defaults: [base, _self_]``)."""
    path = CONF_DIR / group / f"{name}.yaml"
    if not path.is_file():
        raise invalid_choice(group, name, group_options(group))
    raw = OmegaConf.load(path)
    bases = [str(d) for d in raw.pop("defaults", []) if str(d) != "_self_"]
    return OmegaConf.merge(*(_group_yaml(group, base) for base in bases), raw)


def _load_group_config(
    group: str, name: str, schema: type, overrides: dict[str, Any] | None
) -> DictConfig:
    return OmegaConf.merge(OmegaConf.structured(schema), _group_yaml(group, name), overrides or {})


def load_task_config(name: str, data: Any = None) -> DictConfig:
    """Load ``conf/task/<name>.yaml`` onto the schema, with the run's ``data`` sizes."""
    return _load_group_config("task", name, TaskConfig, data_overrides(data))


def data_overrides(data: Any) -> dict[str, int]:
    """The non-null entries of a ``data`` config node."""
    if data is None:
        return {}
    return {k: v for k, v in OmegaConf.to_container(data).items() if v is not None}


def load_model_config(name: str, overrides: dict[str, Any] | None = None) -> DictConfig:
    """Load ``conf/model/<name>.yaml`` onto the schema (the default model, random twins)."""
    return _load_group_config("model", name, ModelConfig, overrides)


def prepare(cfg: DictConfig) -> None:
    """Fill the default model, and run the checks that need no model (fail before loading)."""
    if cfg.model is None:
        cfg.model = load_model_config(DEFAULT_MODEL)
    fraction = cfg.selection.fraction
    if not 0 < fraction <= 1:
        raise ConfigError(f"selection.fraction={fraction} is outside (0, 1]")
    if cfg.selection.scope not in ("layer", "global"):
        raise invalid_choice("selection.scope", cfg.selection.scope, ["layer", "global"])
    if cfg.ablation.mode not in ("zero", "mean"):
        raise invalid_choice("ablation.mode", cfg.ablation.mode, ["zero", "mean"])
    if cfg.model.init not in ("pretrained", "random"):
        raise invalid_choice("model.init", cfg.model.init, ["pretrained", "random"])
    cfg.task = OmegaConf.merge(cfg.task, data_overrides(cfg.data))
    for name in cfg.tasks:
        load_task_config(name)
