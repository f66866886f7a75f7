"""Unit sites: which module's input a kind of unit is read from, and which slice of it.

- ``mlp``: the MLP's neurons, the input of its down/out projection (one unit per column).
- ``attn``: attention neurons, the input of the attention output projection: every query
  head's value output side by side, ``n_heads x head_dim`` units per layer (with
  grouped-query attention the unit is the query head's slice, not the shared key/value head).
- ``heads``: whole heads, ``n_heads`` units per layer. A head's activation on a token is the
  L2 norm of its slice of the attention output projection's input (its output before mixing
  into the residual stream, up to that projection), a scalar >= 0; the usual statistics are
  streamed over that scalar. Ablating a head removes its whole slice.

Parameters a unit takes out when removed (weights only; biases, at most one a row, are
left out): an MLP neuron its up (and gate) row and its down column, ``(2 or 3) x d_model``;
an attention neuron its output-projection column, plus its value-projection row where the
row is its own (one key/value head per query head), ``d_model`` or ``2 x d_model``; a head
its ``head_dim`` columns of the output projection and rows of the query projection, plus
those of the key and value projections where it has its own, ``head_dim x d_model x (2 or
4)``. With grouped-query attention the shared key/value rows die only with every head that
reads them, so they are not counted.

Reading several sites at once concatenates their units per layer (in the order asked), so
one forward feeds one set of streaming sums and the statistics are split per site after.
Ablation replaces a site's module input, columns of the units' slices; the mean a column is
replaced by comes from the statistics of ``means_site`` (a head's mean is its slice's
attention-neuron means, not the mean of its norm).

Sites are plug-ins: another kind of unit is a :class:`Site` subclass, declared in one place,
either registered by its own module (``register_site``) or named by an installed package's
``modularity.sites`` entry point (``name = "pkg.module:SITE_OBJECT"``); ``site=<name>`` and
every analysis then accept it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from importlib.metadata import entry_points
from typing import ClassVar

import torch
from torch import nn

from modularity.errors import ConfigError, invalid_choice
from modularity.models.adapter import ModelAdapter
from modularity.neurons.stats import CollectedStats, NeuronStats

SiteHook = Callable[[int, torch.Tensor], None]


@dataclass(frozen=True)
class Site:
    """One kind of unit, read from the input of one module per layer (a forward pre-hook).

    Subclasses say which module (:meth:`module`, and its state-dict names for export), how
    many units a layer has, and, where a unit is not one input column, how units map to
    columns. A site is declared in one place: ``register_site`` in the module that defines
    it, or an installed package's ``modularity.sites`` entry point naming a ``Site`` object.
    """

    # The module whose input holds the units, in words (export reports name it).
    reader: ClassVar[str] = "the projection that reads them"
    name: str
    noun: str  # what its units are called in words: "neurons", "heads"
    # Whose statistics' means replace this site's units in mean ablation (itself if empty).
    means_site: str = ""
    scorers_excluded: tuple[str, ...] = ()  # scorers whose statistic says nothing here
    why_excluded: str = ""

    def module(self, adapter: ModelAdapter, layer: int) -> nn.Module:
        """The module whose input holds this site's units (hooked with a pre-hook)."""
        raise NotImplementedError

    def parameter_name(self, adapter: ModelAdapter, layer: int, tensor: str) -> str:
        """The state-dict key of that module's ``weight`` or ``bias`` (for export)."""
        raise NotImplementedError

    def width(self, adapter: ModelAdapter) -> int:
        """Units per layer."""
        raise NotImplementedError

    def unit_parameters(self, adapter: ModelAdapter) -> int:
        """Weights one unit takes out when removed (the module docstring's formula)."""
        raise NotImplementedError

    def read(self, adapter: ModelAdapter, x: torch.Tensor) -> torch.Tensor:
        """The units' values per token from the module input ``x`` (``[..., width]``)."""
        return x

    def columns(self, adapter: ModelAdapter, units: torch.Tensor) -> torch.Tensor:
        """The module-input columns that units ``[..., width]`` (bool) cover."""
        return units

    def __post_init__(self) -> None:
        if not self.means_site:
            object.__setattr__(self, "means_site", self.name)


@dataclass(frozen=True)
class MlpSite(Site):
    """MLP neurons: the input of the down/out projection, one unit per column."""

    reader: ClassVar[str] = "the MLP's down projection"

    def module(self, adapter: ModelAdapter, layer: int) -> nn.Module:
        return adapter.neuron_site(layer)

    def parameter_name(self, adapter: ModelAdapter, layer: int, tensor: str) -> str:
        return adapter.parameter_name(layer, "down", tensor)  # type: ignore[arg-type]

    def width(self, adapter: ModelAdapter) -> int:
        return adapter.n_neurons

    def unit_parameters(self, adapter: ModelAdapter) -> int:
        inputs = adapter.input_weight(0, "concat" if adapter.is_gated else "up")
        return inputs.shape[1] + adapter.output_weight(0).shape[0]


@dataclass(frozen=True)
class AttentionSite(Site):
    """Attention neurons: the input of the attention output projection, one unit per column."""

    reader: ClassVar[str] = "the attention output projection"

    def module(self, adapter: ModelAdapter, layer: int) -> nn.Module:
        return adapter.attention_output(layer)

    def parameter_name(self, adapter: ModelAdapter, layer: int, tensor: str) -> str:
        return adapter.attention_parameter_name(layer, tensor)  # type: ignore[arg-type]

    def width(self, adapter: ModelAdapter) -> int:
        return adapter.attention_width

    def unit_parameters(self, adapter: ModelAdapter) -> int:
        d_model = adapter.attention_output_weight(0).shape[0]
        return d_model * (2 if adapter.n_kv_heads == adapter.n_heads else 1)


@dataclass(frozen=True)
class HeadSite(AttentionSite):
    """Whole heads: one unit per query head, its activation the L2 norm of its slice."""

    def width(self, adapter: ModelAdapter) -> int:
        adapter.head_dim  # noqa: B018 - fails in one line if the heads do not tile the input
        return adapter.n_heads

    def read(self, adapter: ModelAdapter, x: torch.Tensor) -> torch.Tensor:
        """``[..., n_heads]``: per token, the L2 norm of each head's slice, in >= float32."""
        x = x if x.dtype in (torch.float32, torch.float64) else x.float()
        return torch.linalg.vector_norm(x.unflatten(-1, (adapter.n_heads, -1)), dim=-1)

    def columns(self, adapter: ModelAdapter, units: torch.Tensor) -> torch.Tensor:
        return units.repeat_interleave(adapter.head_dim, dim=-1)

    def unit_parameters(self, adapter: ModelAdapter) -> int:
        d_model = adapter.attention_output_weight(0).shape[0]
        projections = 4 if adapter.n_kv_heads == adapter.n_heads else 2
        return adapter.head_dim * d_model * projections


ENTRY_POINT_GROUP = "modularity.sites"
SITES: dict[str, Site] = {}


def register_site(site: Site) -> Site:
    """Make ``site`` selectable as ``site=<its name>`` (and in ``analysis.sites``)."""
    if not isinstance(site, Site):
        raise ConfigError(f"a site must be a modularity Site object, got {type(site).__name__}")
    SITES[site.name] = site
    return site


register_site(MlpSite("mlp", noun="neurons"))
register_site(AttentionSite("attn", noun="attention neurons"))
register_site(
    HeadSite(
        "heads",
        noun="heads",
        means_site="attn",
        scorers_excluded=("freq",),
        why_excluded="a head's activation is the norm of its output, positive whenever the "
        "head is active, so the fraction of positive activations says nothing",
    )
)


def _load_entry_points() -> None:
    """Register the sites installed packages declare."""
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name in SITES:
            continue
        site = entry.load()
        if not isinstance(site, Site) or site.name != entry.name:
            raise ConfigError(
                f"site entry point {entry.name!r} ({entry.value}) of group "
                f"{ENTRY_POINT_GROUP!r} must name a Site object called {entry.name!r}"
            )
        register_site(site)


def site_names() -> list[str]:
    """Every selectable site: this package's, then those of installed packages."""
    _load_entry_points()
    return list(SITES)


def site_of(name: str) -> Site:
    """The site named ``name``, or a one-line error naming the valid ones."""
    if name not in SITES:
        _load_entry_points()
    try:
        return SITES[name]
    except KeyError:
        raise invalid_choice("site", name, list(SITES)) from None


def check_site_scorer(site: str, scorer: str) -> None:
    """Refuse a scorer whose statistic is uninformative on ``site`` (one line)."""
    chosen = site_of(site)
    if scorer in chosen.scorers_excluded:
        from modularity.neurons.scoring import scorer_names

        usable = [s for s in scorer_names() if s not in chosen.scorers_excluded]
        raise ConfigError(
            f"scoring={scorer} cannot score site={site}: {chosen.why_excluded}; valid scorers "
            f"for site={site}: {', '.join(usable)}"
        )


def site_widths(adapter: ModelAdapter, sites: Sequence[str]) -> list[int]:
    """Units per layer of each site (a one-line error where the family lacks one)."""
    return [site_of(name).width(adapter) for name in sites]


# --------------------------------------------------------------------------- reading


@contextmanager
def reading_hooks(
    adapter: ModelAdapter,
    sites: Sequence[str],
    hook: SiteHook,
    layers: Sequence[int] | None = None,
) -> Iterator[None]:
    """Call ``hook(layer, units)`` once per layer and forward with the units of every site in
    ``sites`` side by side (``[..., sum of widths]``), read by pre-hooks that change nothing.

    A single site passes its module input itself (no copy); several are concatenated when
    the last of the layer's sites has been read, whatever order the modules run in.
    """
    chosen = [site_of(name) for name in sites]
    if not chosen:
        raise ValueError("reading_hooks needs at least one site")
    parts: dict[int, dict[int, torch.Tensor]] = {}

    def make(layer: int, indices: list[int]) -> Callable[[nn.Module, tuple], None]:
        def pre_hook(_module: nn.Module, args: tuple) -> None:
            read = parts.setdefault(layer, {})
            for i in indices:
                read[i] = chosen[i].read(adapter, args[0])
            if len(read) == len(chosen):
                del parts[layer]
                ordered = [read[i] for i in range(len(chosen))]
                if len({part.dim() for part in ordered}) > 1:  # OPT's MLP sees [tokens, width]
                    ordered = [part.reshape(-1, part.shape[-1]) for part in ordered]
                units = ordered[0] if len(ordered) == 1 else torch.cat(ordered, -1)
                hook(layer, units)

        return pre_hook

    handles = []
    try:
        for layer in range(adapter.n_layers) if layers is None else layers:
            by_module: dict[nn.Module, list[int]] = {}
            for i, site in enumerate(chosen):
                by_module.setdefault(site.module(adapter, layer), []).append(i)
            for module, indices in by_module.items():
                handles.append(module.register_forward_pre_hook(make(layer, indices)))
        yield
    finally:
        for handle in handles:
            handle.remove()
        parts.clear()


def split_statistics(
    stats: CollectedStats, adapter: ModelAdapter, sites: Sequence[str]
) -> dict[str, CollectedStats]:
    """Statistics collected with ``reading_hooks(sites)`` split into each site's.

    Each keeps the whole collection's ``method`` and ``max_relative_mad_error`` (the bound
    over all sites collected together, so an upper bound for each).
    """
    out, start = {}, 0
    for name, width in zip(sites, site_widths(adapter, sites)):
        columns = slice(start, start + width)
        out[name] = replace(
            stats,
            full=_columns(stats.full, columns),
            halves=tuple(_columns(half, columns) for half in stats.halves),
        )
        start += width
    if start != stats.full.shape[1]:
        raise ValueError(f"statistics have {stats.full.shape[1]} units, the sites {start}")
    return out


def _columns(stats: NeuronStats, columns: slice) -> NeuronStats:
    tensors = stats.to_tensors()
    return NeuronStats.from_tensors({k: v[:, columns].contiguous() for k, v in tensors.items()})


# --------------------------------------------------------------------------- ablation


def column_mask(adapter: ModelAdapter, site: str, mask: torch.Tensor) -> torch.Tensor:
    """``[layers, columns]`` bool: the module-input columns that units ``mask`` cover."""
    return site_of(site).columns(adapter, mask)


def check_unit_mask(adapter: ModelAdapter, site: str, mask: object) -> torch.Tensor:
    """``mask`` if it is a bool ``[layers, units]`` tensor for ``site``, else a one-line error."""
    expected = (adapter.n_layers, site_of(site).width(adapter))
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        got = mask.dtype if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise ConfigError(f"the mask must be a bool tensor [layers, units], got {got}")
    if tuple(mask.shape) != expected:
        raise ConfigError(
            f"the mask has shape {list(mask.shape)}, but site={site} of this "
            f"{type(adapter.model).__name__} has [layers, units] = {list(expected)}"
        )
    return mask
