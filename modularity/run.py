"""``python -m modularity.run`` (or the ``modularity`` command): compose, check, run.

A thin entry point: Hydra composes the config, :func:`modularity.analyses.base.execute`
checks it and runs the analysis ``analysis._target_`` names. A problem with the user's
input prints one line and exits with status 2 (``MODULARITY_DEBUG=1`` shows the
traceback); Ctrl-C or SIGTERM exits with 130 and says that nothing cached was lost.
Hydra and the configs are imported only once a command needs them: a TAB of shell
completion is answered from the cache before that (:mod:`modularity.infra.completion`).
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any, NoReturn

from modularity.infra.interrupts import exit_interrupted, stop_on_signals

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from modularity.models.cache import ModelCache


def run(cfg: DictConfig, models: ModelCache | None = None) -> Any:
    """Run the analysis ``cfg`` describes (importable; no Hydra app needed); ``models``: a
    model cache shared with other runs of the same process (e.g. the jobs of a sweep)."""
    from modularity.analyses.base import execute

    return execute(cfg, models)


class Failed(SystemExit):
    """The command stops with ``status`` after printing its one line; a sweep that keeps
    going (``make run``'s sweeper, :mod:`hydra_plugins.modularity_sweepers`) records
    ``message`` as the job's failure and runs the next job instead."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(status)
        self.message = message


def fail(message: str, status: int = 2) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise Failed(message, status)


def task(cfg: DictConfig, models: ModelCache | None = None) -> Any:
    """Hydra's task function: run the composed config, errors as one line."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from modularity.errors import ModularityError

    with open_dict(cfg):
        cfg.output_dir = HydraConfig.get().runtime.output_dir
    try:
        return run(cfg, models)
    except ModularityError as err:
        if os.environ.get("MODULARITY_DEBUG"):
            raise
        fail(str(err))
    except ImportError as err:  # a broken install: name the package, not the import chain
        name = (err.name or "").split(".")[0]
        if os.environ.get("MODULARITY_DEBUG") or not name or name == "modularity":
            raise
        fail(f"a required package is missing or broken ({name}); reinstall it: pip install {name}")
    return None


def help_page(overrides: list[str]) -> str:
    """Hydra's ``--help`` page (header, groups, the composed config, footer) from one
    composition: Hydra's own lists every group through a fresh deep copy of its config
    repository, seconds of CPU before the page appears."""
    from string import Template

    from omegaconf import OmegaConf, open_dict

    from modularity.config import CONF_DIR, compose_config, group_options

    cfg = compose_config(overrides, hydra=True)
    template = cfg.hydra.help.template
    groups = sorted(p.name for p in CONF_DIR.iterdir() if p.is_dir() and p.name != "hydra")
    with open_dict(cfg):
        del cfg["hydra"]
    return Template(template).safe_substitute(
        APP_CONFIG_GROUPS="\n".join(f"{g}: {', '.join(group_options(g))}" for g in groups),
        CONFIG=OmegaConf.to_yaml(cfg),
        FLAGS_HELP="",
        HYDRA_CONFIG_GROUPS="",
    )


SUBCOMMANDS = {"report": "modularity.report", "export": "modularity.checkpoint"}


def main() -> Any:
    """Console script ``modularity``: ``modularity report DIR`` and ``modularity export RUN
    OUT`` run those tools; anything else (``modularity run ...`` or overrides alone) runs an
    analysis, ``+model=x`` read as ``model=x``, and a choice that names no option of its
    group is one line, before Hydra starts."""
    import importlib

    from modularity.infra.completion import cached_help, remember_help, serve

    if serve(sys.argv[1:]):
        return None
    asks_help = any(a in ("--help", "-h") for a in sys.argv[1:])
    words = [a for a in sys.argv[1:] if not a.startswith("-") and a != "run"]
    if asks_help and (page := cached_help(words)) is not None:
        print(page)  # the same configs and code gave it: no Hydra to import, nothing to compose
        return None
    import hydra

    from modularity.config import CONF_DIR, normalise_overrides, register_configs
    from modularity.errors import ConfigError
    from modularity.infra.validate import check_group_choices

    register_configs()
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command in SUBCOMMANDS:
        status = importlib.import_module(SUBCOMMANDS[command]).main(sys.argv[2:])
        sys.exit(status or 0)
    if command == "run":
        del sys.argv[1]
    arguments = normalise_overrides(sys.argv[1:])
    try:
        check_group_choices([a for a in arguments if not a.startswith("-")])
    except ConfigError as err:
        fail(str(err))
    if asks_help:
        page = help_page([a for a in arguments if not a.startswith("-")])
        remember_help(words, page)
        print(page)
        return None
    sys.argv = [sys.argv[0], *arguments]
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    stop_on_signals()
    from modularity.models.cache import ModelCache

    models = ModelCache()  # the jobs of an in-process sweep share loaded models

    def sweep_task(cfg: DictConfig) -> Any:
        return task(cfg, models)

    app = hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")(
        sweep_task
    )
    try:
        return app()
    except KeyboardInterrupt:  # in any phase, Hydra's own start-up included
        multirun = any(a in ("-m", "--multirun") for a in arguments)
        exit_interrupted("; finished jobs are kept" if multirun else "")


if __name__ == "__main__":
    main()
