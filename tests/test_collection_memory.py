"""The collection's memory plan: chosen from the token count, within the budget, bounded."""

import pytest

from modularity.errors import ConfigError
from modularity.neurons.memory import (
    MAX_HISTOGRAM_BYTES,
    WORK_BYTES,
    memory_budget,
    plan_collection,
)

MISTRAL = (32, 14336)  # layers x neurons of Mistral 7B
GB = 10**9


def test_activations_are_kept_while_they_fit_and_streamed_beyond():
    layers, neurons, block = 30, 1536, 128  # SmolLM2-135M
    budget = 4 * GB
    small = plan_collection(layers, neurons, 16, block, 4, budget, batch_items=8)
    assert small.keep and small.kept_bytes == 16 * block * layers * neurons * 4
    assert small.state_bytes <= budget
    large = plan_collection(layers, neurons, 800, block, 4, budget, batch_items=8)
    assert not large.keep and large.bins == 1024
    assert large.state_bytes <= budget
    item = block * layers * neurons * 4
    # The large pilot (a quarter, at most 64 items), its activations kept.
    assert large.pilot_items == 64 and large.kept_bytes == 64 * item
    state = large.state_bytes - large.kept_bytes
    # Without room for it, the small pilot (a sixteenth, 50 items), kept if it fits...
    small = plan_collection(layers, neurons, 800, block, 4, state + 63 * item, batch_items=8)
    assert small.pilot_items == 50 and small.kept_bytes == 50 * item
    # ...else the main pass computes its items again.
    tight = plan_collection(layers, neurons, 800, block, 4, state + 49 * item, batch_items=8)
    assert not tight.keep and tight.kept_bytes == 0 and tight.bins == 1024
    assert tight.pilot_items == 50 and tight.state_bytes == state
    # Few items: the large pilot's minimum of 32, or all of them (nothing kept).
    assert plan_collection(layers, neurons, 40, block, 4, state + GB, keep=False).pilot_items == 32
    few = plan_collection(layers, neurons, 20, block, 4, state + GB, keep=False)
    assert few.pilot_items == 8 and few.kept_bytes == 8 * item
    assert plan_collection(layers, neurons, 8, block, 4, state + GB, keep=False).kept_bytes == 0


@pytest.mark.parametrize("items", [1, 10**3, 10**6])
def test_mistral_state_fits_1_5_gb_whatever_the_token_count(items):
    plan = plan_collection(*MISTRAL, items, 512, 2, 64 * GB, batch_items=8)
    streamed = plan_collection(*MISTRAL, items, 512, 2, 64 * GB, batch_items=8, keep=False)
    assert streamed.state_bytes - streamed.kept_bytes <= 1.5 * GB
    assert (streamed.bins + 2) * MISTRAL[0] * MISTRAL[1] * 2 * 8 <= MAX_HISTOGRAM_BYTES
    assert plan.state_bytes <= 64 * GB
    with_small_budget = plan_collection(*MISTRAL, items, 512, 2, int(1.5 * GB), batch_items=8)
    assert with_small_budget.state_bytes <= 1.5 * GB


def test_work_tensors_are_bounded_by_chunking():
    plan = plan_collection(*MISTRAL, 10**6, 4096, 2, 64 * GB, batch_items=64, keep=False)
    histogram = (plan.bins + 2) * MISTRAL[0] * MISTRAL[1] * 2 * 8
    # What is not histogram or float64 sums is one chunk of work, at most one item over.
    sums = MISTRAL[0] * MISTRAL[1] * (10 + 5) * 8
    work = plan.state_bytes - plan.kept_bytes - histogram - sums  # kept: the pilot's
    assert work <= max(WORK_BYTES, 4096 * MISTRAL[1] * 32)


def test_a_budget_too_small_for_any_histogram_is_one_clear_error():
    with pytest.raises(ConfigError, match="collection.memory_gib.*need at least"):
        plan_collection(*MISTRAL, 10**4, 512, 2, 10**6, batch_items=8)
    # Exact statistics from two passes need no histogram.
    assert not plan_collection(*MISTRAL, 10**4, 512, 2, 10**6, histogram=False).keep


def test_budget_setting():
    assert memory_budget(1.5, "cpu") == int(1.5 * 2**30)
    assert memory_budget(None, "cpu") > 0
    with pytest.raises(ConfigError, match="memory_gib must be > 0"):
        memory_budget(0, "cpu")
