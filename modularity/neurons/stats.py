"""Per-neuron activation statistics: the results of a collection and their on-disk form.

``NeuronStats`` holds the statistics of one set of tokens; ``CollectedStats`` those of a
whole collection and of its two halves (for split-half stability), with how the mean
absolute deviation was obtained and how large its error can be. How the sums are streamed
is in ``modularity.neurons.streaming``; the one-pass MAD bound in ``modularity.neurons.mad_bound``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

# How the MAD was obtained: one pass with a bound; exactly, from a second pass around the
# final means; exactly, from the activations kept in memory by the one pass.
METHODS = ("one-pass", "two-pass", "kept")
TARGETS = ("full", "half0", "half1")


@dataclass(frozen=True)
class NeuronStats:
    """Statistics of one set of tokens; every field ``[layers, neurons]`` float64.

    ``std`` is the population standard deviation (ddof 0), ``freq`` the fraction of
    activations > 0, ``mad`` the mean |x - mean| and ``mad_error`` an absolute bound on the
    error of ``mad`` (0 where it was computed exactly; left out, it is 0). Statistics of an
    empty set (``count`` 0) are NaN.
    """

    count: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    abs_mean: torch.Tensor
    rms: torch.Tensor
    freq: torch.Tensor
    mad: torch.Tensor
    mad_error: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.mad_error is None:
            object.__setattr__(self, "mad_error", torch.zeros_like(self.mad))

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.mean.shape)

    def to_tensors(self, prefix: str = "") -> dict[str, torch.Tensor]:
        return {prefix + f.name: getattr(self, f.name).contiguous() for f in fields(self)}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], prefix: str = "") -> NeuronStats:
        return cls(**{f.name: tensors[prefix + f.name] for f in fields(cls)})


@dataclass(frozen=True)
class CollectedStats:
    """Statistics of a whole collection and of its halves (the full ones sum the halves).

    ``method`` says how the MAD was obtained: ``one-pass`` (histogram bound, see
    ``mad_bound``), ``two-pass`` (exact, from a second pass) or ``kept`` (exact, from the
    activations kept in memory by the one pass). ``max_relative_mad_error`` is the largest
    ``mad_error / mad`` over the neurons whose MAD is not negligible (0 when exact);
    ``n_items`` and ``n_tokens`` are counted per half.
    """

    full: NeuronStats
    halves: tuple[NeuronStats, NeuronStats]
    method: str
    max_relative_mad_error: float
    n_items: tuple[int, int]
    n_tokens: tuple[int, int]

    def to_tensors(self) -> dict[str, torch.Tensor]:
        """Flat tensors for the cache: ``full/mad``, ``half1/count``, ``meta/method``, ..."""
        out: dict[str, torch.Tensor] = {}
        for name, stats in zip(TARGETS, (self.full, *self.halves)):
            out.update(stats.to_tensors(f"{name}/"))
        out["meta/method"] = torch.tensor(METHODS.index(self.method))
        out["meta/max_relative_mad_error"] = torch.tensor(
            self.max_relative_mad_error, dtype=torch.float64
        )
        out["meta/n_items"] = torch.tensor(self.n_items, dtype=torch.int64)
        out["meta/n_tokens"] = torch.tensor(self.n_tokens, dtype=torch.int64)
        return out

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> CollectedStats:
        """Rebuild from ``to_tensors`` output; a ``ValueError`` names what is missing or wrong."""
        _check_tensors(tensors)
        full, half0, half1 = (NeuronStats.from_tensors(tensors, f"{t}/") for t in TARGETS)
        return cls(
            full=full,
            halves=(half0, half1),
            method=METHODS[int(tensors["meta/method"])],
            max_relative_mad_error=float(tensors["meta/max_relative_mad_error"]),
            n_items=tuple(int(v) for v in tensors["meta/n_items"]),
            n_tokens=tuple(int(v) for v in tensors["meta/n_tokens"]),
        )


def _expected_shapes(shape: torch.Size) -> dict[str, tuple[int, ...]]:
    stat_names = [f.name for f in fields(NeuronStats)]
    expected = {f"{t}/{name}": tuple(shape) for t in TARGETS for name in stat_names}
    expected.update(
        {
            "meta/method": (),
            "meta/max_relative_mad_error": (),
            "meta/n_items": (2,),
            "meta/n_tokens": (2,),
        }
    )
    return expected


def _check_tensors(tensors: dict[str, torch.Tensor]) -> None:
    """Every expected name present, with the shape of ``full/count``, finite where it must be."""
    if "full/count" not in tensors:
        raise ValueError("neuron statistics lack 'full/count'")
    expected = _expected_shapes(tensors["full/count"].shape)
    missing = sorted(set(expected) - set(tensors))
    if missing:
        raise ValueError(f"neuron statistics lack {', '.join(map(repr, missing))}")
    for name, shape in expected.items():
        if tuple(tensors[name].shape) != shape:
            got = tuple(tensors[name].shape)
            raise ValueError(f"neuron statistics {name!r} have shape {got}, expected {shape}")
    if int(tensors["meta/method"]) not in range(len(METHODS)):
        raise ValueError(f"neuron statistics 'meta/method' is {int(tensors['meta/method'])}")
    for name in ("meta/max_relative_mad_error", *(f"{t}/count" for t in TARGETS)):
        if not torch.isfinite(tensors[name]).all():
            raise ValueError(f"neuron statistics {name!r} are not finite")
    for target in TARGETS:
        # Statistics of an empty half are NaN by definition; nowhere else.
        counted = tensors[f"{target}/count"] > 0
        for name in (f"{target}/{f.name}" for f in fields(NeuronStats)):
            if not torch.isfinite(tensors[name][counted]).all():
                raise ValueError(f"neuron statistics {name!r} hold NaN or infinity")
