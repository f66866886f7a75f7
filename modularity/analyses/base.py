"""What every analysis shares: its parameters as a structured config, the run context
(pipeline, output directory, logger, error handling), and the tidy rows it returns.

An analysis is one module with one dataclass (its parameters, named by ``_target_`` in
``conf/analysis/<name>.yaml``) whose ``run(ctx)`` returns :class:`Row` objects. The run
context adds the run's settings to every row and writes ``results.csv`` and
``results.parquet``, which ``modularity.report`` and ``summary.md`` read without knowing
which analysis produced them. Adding an analysis touches two files.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import shutil
import tempfile
from dataclasses import dataclass, fields
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pandas as pd
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from modularity.config import choice
from modularity.errors import ConfigError
from modularity.infra.artefacts import writable_directory
from modularity.infra.optional import parquet_engine
from modularity.infra.outputs import write_csv, write_parquet

if TYPE_CHECKING:
    from modularity.infra.loggers import RunLogger
    from modularity.models.cache import ModelCache
    from modularity.pipeline import Pipeline

log = logging.getLogger("modularity")
RESULTS = "results.csv"


@dataclass(frozen=True)
class Row:
    """One reported number and what it is about; the unit of the tidy results table.

    ``metric`` names the quantity (e.g. ``drop``, ``effect``, ``jaccard``, ``alignment_z``);
    ``measure`` the evaluation metric it is computed from (``top1``, ``loss``, ...), if any;
    ``variant`` which side or control it belongs to (``task``/``reference``, a clustering);
    ``partner`` the other member of a pair (a second task, a compared model). ``low``/``high``
    bound a 95% interval, ``n`` counts the units (documents, images, neurons) it rests on;
    ``label`` says in words what it supports (an effect's verdict, a selection's stability
    flag: ``modularity.verdicts``).
    """

    metric: str
    value: float
    task: str = ""
    measure: str = ""
    variant: str = ""
    partner: str = ""
    layer: str = "all"
    low: float = math.nan
    high: float = math.nan
    p_value: float = math.nan
    n: float = math.nan
    label: str = ""


ROW_COLUMNS = [f.name for f in fields(Row)]
SETTING_COLUMNS = [
    "model",
    "checkpoint",
    "init",
    "analysis",
    "fraction",
    "scope",
    "scorer",
    "ablation",
    "layers",
    "site",
    "reference_excludes",
]


def settings(cfg: DictConfig) -> dict[str, Any]:
    """The run's settings that every row carries, so runs of a sweep stay apart."""
    layers = cfg.layers
    return {
        "model": cfg.model.name,
        "checkpoint": cfg.model.checkpoint or "",
        "init": choice(cfg.model.init),
        "analysis": analysis_name(cfg),
        "fraction": float(cfg.selection.fraction),
        "scope": choice(cfg.selection.scope),
        "scorer": choice(cfg.scoring.scorer),
        "ablation": choice(cfg.ablation.mode),
        "layers": "all" if layers is None else ",".join(str(i) for i in layers),
        "site": choice(cfg.site),
        "reference_excludes": choice(cfg.data.exclude_from_reference),
    }


def rows_frame(rows: list[Row], cfg: DictConfig) -> pd.DataFrame:
    """The tidy table of ``rows`` with the run's settings as columns."""
    frame = pd.DataFrame([dataclasses.asdict(r) for r in rows], columns=ROW_COLUMNS)
    for key, value in settings(cfg).items():
        frame.insert(len(frame.columns) - len(ROW_COLUMNS), key, value)
    return frame


@dataclass
class Analysis:
    """Base of every analysis's parameters. Subclasses add fields (the YAML's keys, typed,
    so a bad value is rejected before anything runs) and implement :meth:`run`."""

    needs_tasks: ClassVar[int] = 0  # how many entries of ``tasks`` it needs at least
    # The ``site`` values it works on; None: every registered site (modularity.neurons.sites).
    supported_sites: ClassVar[tuple[str, ...] | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Register every analysis under its short name (its module's last part), so
        ``report`` and ``summary.md`` find analyses defined outside this package too."""
        super().__init_subclass__(**kwargs)
        _ANALYSES[short_name(f"{cls.__module__}.{cls.__name__}")] = cls

    @classmethod
    def summary(cls, rows: pd.DataFrame) -> list[str]:
        """Markdown lines for ``summary.md`` from this analysis's rows of one model (any
        number of runs); nothing by default."""
        return []

    @classmethod
    def figures(cls, rows: pd.DataFrame, out: Path) -> list[Path]:
        """Figures across this analysis's runs (e.g. a sweep) written into ``out``."""
        return []

    def check(self, cfg: DictConfig) -> None:
        """Checks that need no model (fail before loading); ``cfg`` is the whole run."""
        names = list(cfg.tasks)
        if len(names) < self.needs_tasks:
            raise ConfigError(
                f"analysis={analysis_name(cfg)} needs at least {self.needs_tasks} tasks, "
                f"e.g. tasks=[code,prose]; got tasks={names}"
            )
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ConfigError(f"tasks lists {repeated} more than once; give each task once")
        site = choice(cfg.site)
        if self.supported_sites is not None and site not in self.supported_sites:
            raise ConfigError(
                f"analysis={analysis_name(cfg)} works on site="
                f"{'|'.join(self.supported_sites)}, not site={site}"
            )

    def check_width(self, width: int) -> None:
        """Checks of this analysis's parameters against the MLP width (neurons per layer),
        read from the model's config before any job of a sweep loads it; none by default."""

    def run(self, ctx: RunContext) -> list[Row]:
        raise NotImplementedError


_ANALYSES: dict[str, type[Analysis]] = {}
ENTRY_POINT_GROUP = "modularity.analyses"


def short_name(target: str) -> str:
    """An analysis's short name from its ``_target_``: the module's last part
    (``modularity.analyses.prune.Prune`` -> ``prune``)."""
    return target.rsplit(".", 2)[-2]


def analysis_class(name: str) -> type[Analysis]:
    """The Analysis registered as ``name``: one already imported (e.g. by a run's recorded
    ``_target_``), one of this package's, or one an installed package declares under the
    ``modularity.analyses`` entry-point group."""
    import importlib
    from importlib.metadata import entry_points

    if name not in _ANALYSES:
        try:
            importlib.import_module(f"modularity.analyses.{name}")
        except ModuleNotFoundError:
            for entry in entry_points(group=ENTRY_POINT_GROUP, name=name):
                entry.load()
    if name not in _ANALYSES:
        raise ConfigError(
            f"no analysis named {name!r} is importable; valid: {', '.join(sorted(_ANALYSES))} "
            f"(an outside analysis is found from the run's recorded _target_ or the "
            f"{ENTRY_POINT_GROUP!r} entry-point group)"
        )
    return _ANALYSES[name]


def import_recorded_analysis(run_dir: Path) -> None:
    """Import the analysis a run recorded in ``.hydra/config.yaml``, registering it."""
    saved = run_dir / ".hydra" / "config.yaml"
    if not saved.is_file():
        return
    target = OmegaConf.select(OmegaConf.load(saved), "analysis._target_")
    if target:
        try:
            _locate_class(str(target))
        except (ImportError, ConfigError) as err:
            log.warning("cannot import the analysis %s recorded in %s: %s", target, saved, err)


def analysis_name(cfg: DictConfig) -> str:
    """The analysis's short name: its module (``modularity.analyses.prune.Prune`` -> prune)."""
    return short_name(str(cfg.analysis["_target_"]))


def _locate_class(target: str) -> Any:
    """The class a dotted ``_target_`` names. Not Hydra's ``get_class``: its wrapper turns
    a missing optional package (faiss for moefy) into a page of chained import errors."""
    import importlib

    module_name, _, name = target.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name is None or not module_name.startswith(err.name):
            raise  # a package the module itself imports: say which, not the target
        raise ConfigError(f"analysis._target_={target!r}: no module {module_name!r}") from err
    if not hasattr(module, name):
        raise ConfigError(f"analysis._target_={target!r}: {module_name} has no {name!r}")
    return getattr(module, name)


def load_analysis(node: DictConfig) -> Analysis:
    """The analysis object ``node`` describes, its parameters checked against its dataclass."""
    params = OmegaConf.to_container(node, resolve=True)
    target = params.pop("_target_", None)
    if not target:
        raise ConfigError("analysis needs a _target_ (choose one with analysis=<name>)")
    cls = _locate_class(str(target))
    if not (isinstance(cls, type) and issubclass(cls, Analysis)):
        raise ConfigError(f"analysis._target_={target!r} is not a modularity Analysis")
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), params))
    except OmegaConfBaseException as err:
        raise ConfigError(f"analysis: {str(err).splitlines()[0]}") from err


class RunContext:
    """One run: its config, output directory, logger, the model cache it loads through,
    and (made on first use) its pipeline."""

    def __init__(self, cfg: DictConfig, out: Path, logger: RunLogger, models: ModelCache) -> None:
        self.cfg = cfg
        self.out = out
        self.logger = logger
        self.models = models
        self.extras: dict[str, Any] = {}  # what the API returns besides the rows

    @cached_property
    def pipeline(self) -> Pipeline:
        from modularity.pipeline import Pipeline

        return Pipeline(self.cfg, models=self.models)

    def title(self, what: str) -> str:
        """A figure title naming the model and the selection it shows."""
        cfg = self.cfg
        return (
            f"{cfg.model.name}: {what} (top {cfg.selection.fraction:g}, "
            f"{choice(cfg.scoring.scorer)}, {choice(cfg.selection.scope)} scope)"
        )

    def table(self, name: str, frame: pd.DataFrame, index: bool = False) -> Path:
        """Write ``frame`` as ``<name>.csv`` and send it to the logger as a table."""
        path = write_csv(self.out / f"{name}.csv", frame, index=index)
        self.logger.table(name, frame.reset_index() if index else frame)
        return path

    def figure(self, name: str, path: Path | None) -> None:
        if path is not None:
            self.logger.image(name, path)

    def save(self, rows: list[Row]) -> pd.DataFrame:
        """Write the tidy table of the run and log its headline numbers."""
        frame = rows_frame(rows, self.cfg)
        write_csv(self.out / RESULTS, frame, index=False)
        write_parquet(self.out / "results.parquet", frame)
        self.logger.results(frame)
        return frame


@dataclass(frozen=True)
class RunResult:
    """What a run returns: its tidy rows, where it wrote, its config, and analysis extras
    (e.g. the pruning mask and scores)."""

    rows: pd.DataFrame
    out_dir: Path
    config: DictConfig
    extras: dict[str, Any]


def default_output_dir(cfg: DictConfig) -> Path:
    """Where a run outside Hydra writes when no directory was chosen: Hydra's own pattern."""
    from datetime import datetime

    now = datetime.now()
    return (
        Path("outputs")
        / now.strftime("%Y-%m-%d")
        / (f"{now.strftime('%H-%M-%S-%f')}_{cfg.model.name}_{cfg.task.name}")
    )


def record_config(cfg: DictConfig, out: Path) -> None:
    """Save the config as Hydra does (``.hydra/config.yaml``) for a run started from Python,
    so ``modularity.export`` and ``modularity.report`` read it like any run directory.
    Written once the results are saved; a Hydra job's own copy is left as it is."""
    saved = out / ".hydra" / "config.yaml"
    if not saved.is_file():
        saved.parent.mkdir(exist_ok=True)
        recorded = cfg.copy()
        with open_dict(recorded):
            recorded.output_dir = str(out)
        OmegaConf.save(recorded, saved)


def execute(cfg: DictConfig, models: ModelCache | None = None) -> RunResult:
    """Check ``cfg``, run its analysis in a fresh context, save the rows; the logger is
    always closed, since a multirun reuses processes and W&B would reuse a live run.
    ``models``: the model cache of a sweep whose jobs share loaded models (default: the
    run's own).

    Under DDP every rank runs the analysis (each loop's sums are combined across ranks),
    and only rank zero writes, logs and prints: the others write into a throwaway directory.
    """
    from modularity.infra.validate import check_config

    analysis = check_config(cfg)
    parquet_engine()
    import lightning as L

    from modularity.infra.console import quiet_libraries

    quiet_libraries(bool(cfg.get("verbose", False)))
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    from modularity.infra.loggers import RunLogger

    main_rank = rank_zero_only.rank == 0
    if main_rank:
        out = writable_directory(Path(cfg.output_dir or default_output_dir(cfg)))
    else:
        out = Path(tempfile.mkdtemp(prefix=f"modularity-rank{rank_zero_only.rank}-"))
        log.setLevel(logging.WARNING)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    logger = RunLogger(cfg.logger if main_rank else None, cfg, out)
    from modularity.models.cache import ModelCache

    ctx = RunContext(cfg, out, logger, models if models is not None else ModelCache())
    try:
        rows = analysis.run(ctx)
        frame = ctx.save(rows)
        if main_rank:
            record_config(cfg, out)
    finally:
        logger.finish()
        if not main_rank:
            shutil.rmtree(out, ignore_errors=True)
    return RunResult(frame, out, cfg, ctx.extras)
