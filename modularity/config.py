"""Structured config schemas, registered with Hydra's ConfigStore, and composition helpers.

The root schema types every node, so a misspelt key or a bad choice (an Enum field) fails at
composition with Hydra's own message. The YAML files live in ``conf/`` at the repository's
top; the wheel ships them inside the package, so an installed ``modularity`` runs from any
directory (``modularity.infra.paths.CONF_DIR`` finds either). Task families (one task per class
or superclass of an image set) are generated here, in one loop, instead of one YAML each.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.core.object_type import ObjectType
from omegaconf import MISSING, DictConfig, OmegaConf

from modularity.errors import invalid_choice
from modularity.infra.paths import CONF_DIR
from modularity.modality import MODALITIES
from modularity.verdicts import VerdictConfig

# Enum members are named as users type them (``selection.scope=global``), hence the
# functional form where a name is a Python keyword or starts with a digit.
Scope = Enum("Scope", {"layer": "layer", "global": "global"})
AblationMode = Enum("AblationMode", {"zero": "zero", "mean": "mean"})
Init = Enum("Init", {"pretrained": "pretrained", "random": "random"})
DType = Enum("DType", {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"})
Quantization = Enum("Quantization", {"8bit": "8bit", "4bit": "4bit"})
# Task and model kinds name a modality (modularity.modality), the one place they are listed.
TaskKind = Enum("TaskKind", {m.task_kind: m.task_kind for m in MODALITIES})
Source = Enum("Source", {"local": "local", "hub": "hub"})
ModelKind = Enum("ModelKind", {m.model_kind: m.model_kind for m in MODALITIES})
# What a text task's reference leaves out: the task's own documents (always: references and
# tasks read disjoint document pools) or, in addition, the task's whole domain (its corpora).
ReferenceExclusion = Enum("ReferenceExclusion", {"documents": "documents", "domain": "domain"})


def choice(value: Any) -> str:
    """The string a user typed for an Enum field (or the value itself if it is a string)."""
    return value.name if isinstance(value, Enum) else str(value)


def checked_choice(options: type[Enum], value: Any, what: str) -> str:
    """``value`` (a member of ``options`` or the string a user typed) as that string, after
    checking it against the Enum, the one place that lists a choice's valid strings; for
    functions that library users call with plain strings, past the schema's check."""
    name = choice(value)
    if name not in options.__members__:
        raise invalid_choice(what, name, options.__members__)
    return name


@dataclass
class LayoutConfig:
    """Module paths of a family without an adapter (dotted, as ``get_submodule`` takes them)."""

    blocks: str = MISSING  # the block list, from the model's top (e.g. model.decoder.layers)
    up: str = MISSING  # inside a block: the MLP's input projection
    down: str = MISSING  # inside a block: the MLP's output projection (its input: the neurons)
    gate: str | None = None  # gated MLPs: the gate projection
    attn_out: str | None = None  # the attention output projection
    kind: ModelKind = ModelKind["causal_lm"]  # causal_lm | image_classifier


@dataclass
class ModelConfig:
    """Which network to analyse and how to load it."""

    name: str = MISSING
    path: str | None = None  # hub id, local directory, or pkg:<package>/<dir>
    builtin: str | None = None  # a small model trained by the project (modularity.zoo)
    checkpoint: str | None = None  # builtin models: "init" or "step-<n>" (training dynamics)
    hf_config: dict[str, Any] | None = None  # build from an HF config dict (no download)
    tokenizer: str | None = None  # hub id or directory; "bytes" for a byte-level one
    init: Init = Init["pretrained"]  # pretrained | random (the random-initialisation twin)
    seed: int = 0  # seed of the random twin's initialisation
    dtype: DType = DType["float32"]
    revision: str | None = None
    gguf_file: str | None = None  # a GGUF file inside `path`, de-quantised once and cached
    # A package shipping a GGUF in parts, joined by its assemble() (instead of `path`).
    gguf_parts: str | None = None
    quantization: Quantization | None = None  # 8bit | 4bit (bitsandbytes, CUDA only)
    batch_size: int = 8
    # Tiny models: the text task's block size is capped at this context length.
    max_length: int | None = None
    # A family without an adapter: where its blocks and MLP live (see LayoutConfig).
    layout: LayoutConfig | None = None


@dataclass
class TaskConfig:
    """A named data source, its class filter, and the reference it is scored against."""

    name: str = MISSING
    kind: TaskKind = TaskKind["text"]
    description: str = ""
    reference: str | None = None  # name of the reference task config
    source: Source = Source["local"]
    local: dict[str, Any] = field(default_factory=dict)  # text: {corpus}; image: {image_set}
    hub: dict[str, Any] = field(default_factory=dict)  # {dataset, name, split, field, ...}
    classes: list[str] | None = None  # image tasks: class or superclass names to keep
    block_size: int = 128  # text: tokens per packed block
    collect_size: int = 65536  # tokens (text) or images used to collect statistics
    eval_size: int = 32768  # tokens (text) or images held out for evaluation
    seed: int = 0  # orders the sample and assigns its halves (pools are fixed by SPLIT_SEED)


@dataclass
class DataConfig:
    """Settings applied to every task of a run (the task, its reference, ``tasks``); a null
    size keeps each task's own."""

    collect_size: int | None = None
    eval_size: int | None = None
    block_size: int | None = None
    source: Source | None = None  # local | hub: where every task reads its data
    exclude_from_reference: ReferenceExclusion = ReferenceExclusion["documents"]
    # A directory holding local copies of hub datasets as <mirror>/<org>/<name> (e.g. made
    # with `hf download <id> --repo-type dataset --local-dir <mirror>/<id>`): a task's hub
    # dataset is read from there when its copy exists (clusters without network, tests).
    hub_mirror: str | None = None


@dataclass
class SelectionConfig:
    fraction: float = 0.05  # share of neurons to select, in (0, 1]
    scope: Scope = Scope["layer"]  # layer: top fraction of each layer; global: of all


@dataclass
class ScoringConfig:
    scorer: str = "mad"  # any name registered in modularity.neurons.scoring
    eps: float = 1e-6
    seed: int = 0  # for the random scorer


@dataclass
class AblationConfig:
    mode: AblationMode = AblationMode["zero"]  # zero | mean (replace by the reference mean)


@dataclass
class CollectionConfig:
    """Statistics collection: the memory it may hold (activations kept for the exact MAD,
    else a histogram); null is a quarter of the free memory where the activations live."""

    memory_gib: float | None = None


@dataclass
class CacheConfig:
    enabled: bool = True
    dir: str | None = None  # default: $MODULARITY_CACHE_DIR or the user cache dir


@dataclass
class Config:
    model: ModelConfig = MISSING
    task: TaskConfig = MISSING
    tasks: list[str] = field(default_factory=list)  # overlap, moefy, match, dynamics
    # The analysis's own structured config (its parameters), checked against the dataclass
    # its ``_target_`` names before anything runs (modularity.analyses.base).
    analysis: dict[str, Any] = MISSING
    layers: list[int] | None = None  # layer subset; None = all layers
    # The units selected, ablated and compared: any site registered in modularity.neurons.sites
    # (mlp | attn | heads, and those of installed packages).
    site: str = "mlp"
    data: DataConfig = field(default_factory=DataConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    ablation: AblationConfig = field(default_factory=AblationConfig)
    # Keyword arguments of lightning.pytorch.Trainer, passed through (``+trainer.x=...``
    # adds one); logger, checkpointing and model summary are always off for these loops.
    trainer: dict[str, Any] = field(default_factory=dict)
    cache: CacheConfig = field(default_factory=CacheConfig)
    verdict: VerdictConfig = field(default_factory=VerdictConfig)  # modularity.verdicts
    collection: CollectionConfig = field(default_factory=CollectionConfig)
    logger: Any = None
    seed: int = 0
    # Library chatter (transformers' loading bars, W&B's console messages): off unless true.
    verbose: bool = False
    output_dir: str | None = None  # set by the entry point; the API picks one if None


# --------------------------------------------------------------------------- task families


def slug(name: str) -> str:
    """A task-name-safe form of a class name: ``"T-shirt/top"`` -> ``"t-shirt_top"``."""
    return re.sub(r"[^a-z0-9_-]+", "_", name.lower()).strip("_")


def task_families() -> dict[str, tuple[str, dict[str, list[str]]]]:
    """Family prefix -> (its reference task config, {task suffix: classes to keep}).

    One task per class, and one per superclass of two or more classes (a one-class
    superclass would duplicate its class's task).
    """
    from modularity.data.image_classes import image_classes

    families = {}
    for prefix, image_set, reference in (
        ("digits", "digits", "digits"),
        ("fashion", "fashion_mnist", "fashion"),
        ("cifar20", "cifar100", "cifar100"),
    ):
        classes = image_classes(image_set)
        members = {slug(c): [c] for c in classes.class_names}
        members.update({name: [name] for name, ids in classes.superclasses.items() if len(ids) > 1})
        families[prefix] = (reference, members)
    return families


def family_tasks(prefix: str) -> list[str]:
    """The task names of one family, e.g. ``family_tasks("digits")``."""
    return [f"{prefix}-{suffix}" for suffix in task_families()[prefix][1]]


def nested_tasks(names: Sequence[str]) -> dict[str, str]:
    """Each of ``names`` whose images all belong to another of ``names`` (a class inside
    its superclass: fashion-shirt in fashion-tops) -> that task. Any network ranks such a
    pair as related, so across-task statistics must not count both as independent."""
    from modularity.data.image_classes import image_classes

    sets: dict[str, frozenset[int]] = {}
    for prefix, image_set in (
        ("digits", "digits"),
        ("fashion", "fashion_mnist"),
        ("cifar20", "cifar100"),
    ):
        classes = image_classes(image_set)
        for i, name in enumerate(classes.class_names):
            sets[f"{prefix}-{slug(name)}"] = frozenset([i])
        for name, ids in classes.superclasses.items():
            sets.setdefault(f"{prefix}-{name}", frozenset(ids))
    known = [n for n in names if n in sets]
    return {
        inner: outer
        for inner in known
        for outer in known
        if inner != outer and sets[inner] < sets[outer]
    }


# --------------------------------------------------------------------------- registration


def _csv(values: Sequence[Any]) -> str:
    """``${csv:${tasks}}``: a list as the comma-separated sweep Hydra's sweeper expects, so
    an experiment names its task list once."""
    return ",".join(str(v) for v in values)


def register_configs() -> None:
    """Register the generated task families, the root schema and the ``csv`` resolver, once
    per process (every composition asks; storing the families again would cost each one).
    The schema goes in last, as the mark that everything is."""
    if not OmegaConf.has_resolver("csv"):
        OmegaConf.register_new_resolver("csv", _csv)
    cs = ConfigStore.instance()
    if "config_schema.yaml" in cs.repo:
        return
    for prefix, (reference, members) in task_families().items():
        for suffix, classes in members.items():
            cs.store(
                group="task",
                name=f"{prefix}-{suffix}",
                node={
                    "defaults": [reference, "_self_"],
                    "name": f"{prefix}-{suffix}",
                    "classes": classes,
                },
            )
    cs.store(name="config_schema", node=Config)


def normalise_overrides(overrides: Sequence[str]) -> list[str]:
    """``+model=x`` (the documented spelling) means ``model=x``: ``model`` is in the
    defaults list (so a bare run has one), where Hydra would reject ``+model``."""
    return [arg[1:] if arg.startswith(("+model=", "+model@")) else arg for arg in overrides]


@contextmanager
def hydra_context() -> Iterator[None]:
    """An initialised Hydra (config search path, ConfigStore, resolvers) outside a Hydra app,
    for composing configs and expanding sweeps (``make run``, the API, tests)."""
    register_configs()
    if GlobalHydra.instance().is_initialized():  # inside a Hydra app or an enclosing context
        yield
        return
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        yield


def compose_config(overrides: Sequence[str] = (), hydra: bool = False) -> DictConfig:
    """Compose ``conf/config.yaml`` with ``overrides`` outside a Hydra app; ``hydra=True``
    keeps the ``hydra`` node (e.g. an experiment's sweep)."""
    with hydra_context():
        return compose(
            "config", overrides=normalise_overrides(overrides), return_hydra_config=hydra
        )


def group_options(group: str) -> list[str]:
    """Every option of a config group: YAML files, generated entries, and the configs other
    packages add to Hydra's search path."""
    register_configs()
    files = {p.stem for p in (CONF_DIR / group).glob("*.yaml")}
    store = ConfigStore.instance()
    listed = store.list(group) if store.get_type(group) == ObjectType.GROUP else []
    stored = {name.removesuffix(".yaml") for name in listed}
    return sorted(files | stored | _search_path_options(group))


@functools.lru_cache(maxsize=64)
def _search_path_options(group: str) -> frozenset[str]:
    """The options of ``group`` as Hydra's config loader lists them, which includes configs
    that installed packages ship through a Hydra ``SearchPathPlugin`` (a module under
    ``hydra_plugins/``): how a package outside this one adds a model, analysis or scorer
    config. Listed once per process (a tenth of a second; the search path does not change)."""
    with hydra_context():
        return frozenset(GlobalHydra.instance().config_loader().get_group_options(group))


@functools.lru_cache(maxsize=256)
def _group_node(group: str, name: str) -> DictConfig:
    """One option of a group as the root config would hold it (defaults merged by Hydra).

    Cached per process: config files do not change while a run reads them, and a sweep
    reads the same task configs once per job.
    """
    from modularity.errors import invalid_choice

    if name not in group_options(group):
        raise invalid_choice(group, name, group_options(group))
    with hydra_context():
        return compose("config", overrides=[f"{group}={name}"])[group]


def load_task_config(name: str, data: Any = None) -> DictConfig:
    """Task config ``name`` with the run's ``data`` settings applied."""
    return with_data_settings(_group_node("task", name), data)


def with_data_settings(task: DictConfig, data: Any) -> DictConfig:
    """``task`` with the run's ``data`` sizes and source, its hub dataset read from the
    ``data.hub_mirror`` copy when there is one."""
    task = OmegaConf.merge(task, data_overrides(data))
    mirror = data.get("hub_mirror") if data is not None else None
    dataset = task.hub.get("dataset")
    if mirror and dataset and (Path(mirror).expanduser() / dataset).is_dir():
        task.hub.dataset = str(Path(mirror).expanduser() / dataset)
    return task


def load_model_config(name: str, overrides: dict[str, Any] | None = None) -> DictConfig:
    """Model config ``name`` (e.g. for random twins or tests), with ``overrides``."""
    return OmegaConf.merge(_group_node("model", name), overrides or {})


def data_overrides(data: Any) -> dict[str, Any]:
    """The ``data`` settings that replace a task's own (non-null sizes and source)."""
    if data is None:
        return {}
    keys = ("collect_size", "eval_size", "block_size", "source")
    return {k: data[k] for k in keys if data.get(k) is not None}
