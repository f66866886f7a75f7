"""How much memory a statistics collection may hold, and how it spends it: chosen up front.

A collection either *keeps* its activations (when they fit the budget) and computes the
exact MAD from memory after its one forward pass, or *streams* them into a histogram whose
size is fixed by the model's shape, never by the number of tokens (``mad_bound``: one pass
with an error bound). The choice is made from the token count before anything runs, so no
pass is ever computed and thrown away. Every byte of state is counted: kept activations,
histograms, float64 sums, the pilot's kept activations and the reusable work tensors.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from modularity.errors import ConfigError
from modularity.neurons.mad_bound import BINS

DEFAULT_SHARE = 0.25  # with no setting, a collection may hold this share of free memory
# The histogram never holds more than this, whatever the budget: 1,024 bins for SmolLM2's
# 46k neurons, 144 for Mistral 7B's 459k (whose whole state then stays under 1.5 GB).
MAX_HISTOGRAM_BYTES = 2**30
MIN_BINS = 16  # fewer would leave the one-pass bound too loose to be worth a pass
WORK_BYTES = 2**28  # the work tensors of one update: items are streamed in chunks this size
F64_BYTES = 8
MOMENT_SUMS = 2 * 5  # OnePassSums.moments per neuron and layer: halves x sums
DEVIATION_SUMS = 2 * 4  # ExactMadSums.deviations
PILOT_SUMS = 5
# Work bytes per activation of a streamed update: x, y and scratch (float32), per-item sums,
# and the histogram's scaled positions (float32), codes and bins (int64).
STREAM_WORK_BYTES = 3 * 4 + 4 + 8 + 8
EXACT_WORK_BYTES = 2 * 4  # ExactMadSums: y and scratch
# The pilot's standard errors set each neuron's fine range, so its size sets how tight the
# one-pass bound is: a neuron whose few pilot items include an outlier gets a wide range and
# coarse bins, and one whose error was underestimated may see its mean fall outside. From a
# sixteenth of SmolLM2's items (8 of 128 at 16k tokens) the bound missed 1e-4 (0.012), and
# from 16 of 64 items at 8k (3.3e-4): second passes. From a quarter and at least 32 items,
# every neuron held it (at most 6e-5 for code, prose and the mix at 8k-102k tokens).
# Kept in memory, the pilot's items are replayed, so the large pilot costs memory, not
# forwards; where it does not fit, a small one is recomputed (a forward over its items).
PILOT = (4, 32, 64)  # kept: one item in 4, at least 32 and at most 64 items
SMALL_PILOT = (16, 8, 64)  # where the large pilot does not fit the budget


def available_bytes(device: str) -> int:
    """Free memory where the activations live: the GPU's, or the machine's RAM."""
    if device == "gpu" and torch.cuda.is_available():
        return int(torch.cuda.mem_get_info()[0])
    import psutil

    return int(psutil.virtual_memory().available)


def memory_budget(gib: float | None, device: str) -> int:
    """The collection's budget in bytes: ``gib`` GiB, or ``DEFAULT_SHARE`` of free memory."""
    if gib is None:
        return int(DEFAULT_SHARE * available_bytes(device))
    if not gib > 0:
        raise ConfigError(
            f"collection.memory_gib must be > 0 (or null: a quarter of free memory); got {gib}"
        )
    return int(gib * 2**30)


@dataclass(frozen=True)
class CollectionPlan:
    """How one collection runs: ``keep`` its activations (exact MAD from memory, one forward)
    or stream them into ``bins`` histogram bins per neuron and half; ``state_bytes`` is the
    most memory its state takes, within ``budget``."""

    keep: bool
    bins: int
    tokens: int
    budget: int
    state_bytes: int
    kept_bytes: int  # the activations, when kept; else the pilot's, at most
    pilot_items: int = 0  # items of the pilot that places the bins (0: no histogram)

    def describe(self) -> str:
        how = "activations kept, exact MAD" if self.keep else f"one pass, {self.bins} bins"
        if self.pilot_items:
            kept = "kept" if self.kept_bytes else "recomputed"
            how += f" placed by a pilot of {self.pilot_items} items ({kept})"
        return (
            f"{self.tokens} tokens: {how}; state {self.state_bytes / 2**20:.0f} MiB of a "
            f"{self.budget / 2**20:.0f} MiB budget"
        )


def chunk_items(item_positions: int, n_neurons: int, work_per_activation: int) -> int:
    """Items per streamed chunk, so that one update's work tensors stay within ``WORK_BYTES``
    (at least one item)."""
    return max(1, WORK_BYTES // max(1, item_positions * n_neurons * work_per_activation))


def chunk_positions(n_neurons: int, work_per_activation: int) -> int:
    """Positions per streamed chunk of an item too large for ``WORK_BYTES`` on its own."""
    return max(1, WORK_BYTES // max(1, n_neurons * work_per_activation))


def work_bytes(item_positions: int, n_neurons: int, per_activation: int, batch_items: int) -> int:
    """The most work-tensor bytes of one update: a chunk of items, or of one item's positions."""
    items = min(batch_items, chunk_items(item_positions, n_neurons, per_activation))
    positions = item_positions if items > 1 else chunk_positions(n_neurons, per_activation)
    return items * min(item_positions, positions) * n_neurons * per_activation


def histogram_bins(n_layers: int, n_neurons: int, room: int) -> int:
    """The most fine bins per neuron (up to ``BINS``) whose histogram fits ``room`` bytes and
    ``MAX_HISTOGRAM_BYTES``; 0 when fewer than ``MIN_BINS`` would."""
    per_bin = n_layers * n_neurons * 2 * F64_BYTES
    bins = min(BINS, min(room, MAX_HISTOGRAM_BYTES) // per_bin - 2)
    return bins if bins >= MIN_BINS else 0


def plan_collection(
    n_layers: int,
    n_neurons: int,
    n_items: int,
    item_positions: int,
    element_size: int,
    budget: int,
    *,
    batch_items: int = 1,
    histogram: bool = True,
    keep: bool = True,
) -> CollectionPlan:
    """Keep the activations if ``keep`` allows and they (and the sums, and the work tensors
    of batches of ``batch_items``) fit ``budget``;
    otherwise stream them, with ``histogram``, into the largest histogram that fits, placed
    by the large pilot if the room left keeps its items' activations for the main pass, else
    by the small one (kept if it fits, else recomputed). Raises ``ConfigError`` when not
    even a minimal histogram fits."""
    neurons = n_layers * n_neurons
    tokens = n_items * item_positions
    sums = neurons * MOMENT_SUMS * F64_BYTES
    exact = neurons * DEVIATION_SUMS * F64_BYTES

    def work(per_activation: int) -> int:
        return work_bytes(item_positions, n_neurons, per_activation, batch_items)

    kept = tokens * neurons * element_size
    keep_state = kept + sums + exact + max(work(STREAM_WORK_BYTES), work(EXACT_WORK_BYTES))
    if keep and keep_state <= budget:
        return CollectionPlan(True, 0, tokens, budget, keep_state, kept)
    if not histogram:  # moments, then the exact pass: no histogram, nothing kept
        state = sums + exact + work(STREAM_WORK_BYTES)
        return CollectionPlan(False, 0, tokens, budget, state, 0)
    fixed = sums + neurons * PILOT_SUMS * F64_BYTES + work(STREAM_WORK_BYTES)
    bins = histogram_bins(n_layers, n_neurons, budget - fixed)
    if not bins:
        need = fixed + (MIN_BINS + 2) * neurons * 2 * F64_BYTES
        raise ConfigError(
            f"collection.memory_gib: a budget of {budget / 2**30:.2f} GiB cannot hold the "
            f"statistics of {n_layers} x {n_neurons} neurons; they need at least "
            f"{need / 2**30:.2f} GiB"
        )
    state = fixed + (bins + 2) * neurons * 2 * F64_BYTES
    item_bytes = item_positions * neurons * element_size
    for sizes in (PILOT, SMALL_PILOT):
        pilot = pilot_size(n_items, *sizes)
        kept = pilot * item_bytes
        if kept > 0 and pilot < n_items and state + kept <= budget:
            return CollectionPlan(False, bins, tokens, budget, state + kept, kept, pilot)
    return CollectionPlan(False, bins, tokens, budget, state, 0, pilot)  # recomputed


def pilot_size(n_items: int, share: int, least: int, most: int) -> int:
    """One item in ``share``, at least ``least`` and at most ``most``, at most every item."""
    return min(n_items, max(least, min(most, n_items // share)))
