"""Lightning Trainers for the inference loops (collection, evaluation), built from config.

``cfg.trainer`` holds ``lightning.pytorch.Trainer``'s own arguments (``_target_`` plus
any keyword it takes), so every Lightning option reaches it unchanged: device placement,
precision (``bf16-true`` keeps a 7B model in bf16), strategy, devices. The loops only say
what one batch does.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import TQDMProgressBar
from omegaconf import DictConfig, OmegaConf
from torchmetrics import Metric

from modularity.infra.console import StageEstimate, StageTimer, interactive

# Always off for inference loops: they log through modularity's own logger, save nothing,
# and would print a model summary for every loop of a sweep.
FIXED_TRAINER_ARGS = {"logger": False, "enable_checkpointing": False, "enable_model_summary": False}


def quiet_lightning() -> None:
    """Silence Lightning's start-up chatter (device lines, tips, worker-count advice), which
    would otherwise repeat for every loop of a sweep; real warnings still show."""
    for name in (
        "lightning.pytorch.utilities.rank_zero",
        "lightning.fabric.utilities.rank_zero",
        "lightning.pytorch.accelerators.cuda",
        # "Received SIGTERM": the run says "interrupted" itself, in one line
        "lightning.pytorch.trainer.connectors.signal_connector",
    ):
        logging.getLogger(name).setLevel(logging.WARNING)
    for message in (
        ".*does not have many workers.*",
        ".*GPU available but not used.*",
        ".*LeafSpec.*is deprecated.*",
        ".*predict returned None.*",  # the loops accumulate into metric states instead
    ):
        warnings.filterwarnings("ignore", message)


class StageProgressBar(TQDMProgressBar):
    """A progress bar that names what the loop does ("collect code", "evaluate pile")."""

    def __init__(self, stage: str) -> None:
        super().__init__(leave=False)
        self.stage = stage

    @property
    def predict_description(self) -> str:
        return self.stage

    def on_predict_batch_start(self, *args: Any, **kwargs: Any) -> None:
        super().on_predict_batch_start(*args, **kwargs)
        self.predict_progress_bar.set_description(self.stage, refresh=False)


class SumsLoop(L.LightningModule):
    """Base of the collection and evaluation loops over ``net`` (the analysed network),
    which accumulate into torchmetrics states: those stay float64 whatever the precision
    plugin does to the module (``bf16-true`` converts every floating tensor of the module,
    states included)."""

    net: torch.nn.Module

    def on_predict_start(self) -> None:
        for module in self.modules():
            if not isinstance(module, Metric):
                continue
            for name in module._defaults:  # the states, not the metric's other buffers
                state = getattr(module, name)
                if isinstance(state, torch.Tensor) and state.is_floating_point():
                    setattr(module, name, state.to(torch.float64))


@contextmanager
def key_value_cache_off(network: torch.nn.Module | None) -> Iterator[None]:
    """Stop ``network``'s forwards from building a key/value cache (a causal LM's config
    turns it on for generation): the loops run whole sequences once, so it would only cost
    time and memory. The config is restored afterwards, so an exported model keeps it."""
    config = getattr(network, "config", None)
    nodes = [] if config is None else [config, config.get_text_config()]
    saved = [(node, node.use_cache) for node in nodes if hasattr(node, "use_cache")]
    for node, _ in saved:
        node.use_cache = False
    try:
        yield
    finally:
        for node, value in reversed(saved):
            node.use_cache = value


@contextmanager
def interrupts_kept() -> Iterator[None]:
    """Let an interrupt inside a Lightning loop stay a ``KeyboardInterrupt``.

    Lightning turns a ``KeyboardInterrupt`` (Ctrl-C, or SIGTERM under
    :func:`modularity.infra.interrupts.stop_on_signals`) into ``sys.exit(1)``, which would end any
    caller (``make run``'s driver, a notebook) with status 1 and no message; every phase
    outside a loop raises ``KeyboardInterrupt``, so loops do too.
    """
    try:
        yield
    except SystemExit as exit_:
        if isinstance(exit_.__context__, KeyboardInterrupt):
            raise KeyboardInterrupt from None
        raise


def run_loop(trainer: L.Trainer, module: L.LightningModule, loader: Any) -> None:
    """Run ``module.predict_step`` over ``loader``, which accumulates into metric states.

    Lightning's predict loop, not its test loop: under DDP it splits the data without
    padding (the test loop repeats a few items so every rank gets as many), so every item
    is counted exactly once in the sums. Ctrl-C during the loop raises ``KeyboardInterrupt``
    (:func:`interrupts_kept`), and so does a SIGTERM, which Lightning's predict loop would
    only record: the run stops like Ctrl-C (nothing cached is lost). A loop over a
    network (``module.net``, as every :class:`SumsLoop`) runs it without key/value cache.
    """
    with interrupts_kept(), key_value_cache_off(getattr(module, "net", None)):
        trainer.predict(module, dataloaders=loader, return_predictions=False)
    if trainer.received_sigterm:
        raise KeyboardInterrupt("SIGTERM")


def trainer_arguments(trainer_cfg: Any) -> dict[str, Any]:
    """The Trainer's keyword arguments from ``cfg.trainer`` (``_target_`` included)."""
    if isinstance(trainer_cfg, DictConfig):
        return dict(OmegaConf.to_container(trainer_cfg, resolve=True))
    return dict(trainer_cfg)


def make_trainer(trainer_cfg: Any, stage: str = "", **overrides: Any) -> L.Trainer:
    """A Trainer for an inference loop, its progress bar labelled ``stage``; outside a
    terminal a line with the stage's time instead, and before a long stage a line with its
    size and expected time (:mod:`modularity.infra.console`)."""
    quiet_lightning()
    config = {"_target_": "lightning.pytorch.Trainer", **trainer_arguments(trainer_cfg)}
    config.update(overrides)
    callbacks: list[L.Callback] = []
    bar = False
    if config.get("enable_progress_bar", True):
        bar = interactive()
        callbacks.append(StageProgressBar(stage) if bar else StageTimer(stage))
        config["enable_progress_bar"] = bar
    if stage and not bar:  # a bar shows the time left itself
        callbacks.append(StageEstimate(stage))
    return instantiate(config, callbacks=callbacks, **FIXED_TRAINER_ARGS)


def model_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The keyword arguments the HF model takes (labels are scored here, not by the model)."""
    return {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "pixel_values")}
