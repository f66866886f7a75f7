"""Lightning DDP (two CPU processes, gloo) gives the statistics of one process.

The test runs this file as a script: Lightning's DDP launcher starts the second process by
running the script again, each process collects its shard, and rank 0 saves the result.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from modularity.collect import collect_statistics
from modularity.config import load_model_config
from modularity.models.loading import load_model
from modularity.neurons.stats import CollectedStats

ITEMS, BATCH = 45, 4  # uneven shards: 23 and 22 items


def collected(devices: int, strategy: str) -> CollectedStats:
    from test_collect import Blocks

    trainer = OmegaConf.create(
        {"accelerator": "cpu", "devices": devices, "strategy": strategy}
        | {"precision": "32-true", "enable_progress_bar": False}
    )
    loaded = load_model(load_model_config("tiny_llama"))
    return collect_statistics(loaded, DataLoader(Blocks(ITEMS, seed=3), batch_size=BATCH), trainer)


@pytest.mark.slow
def test_two_processes_give_the_statistics_of_one(tmp_path):
    out = tmp_path / "ddp.pt"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run(
        [sys.executable, str(Path(__file__)), str(out)], check=True, env=env, timeout=600
    )
    ddp = CollectedStats.from_tensors(torch.load(out))
    one = collected(1, "auto")
    assert ddp.method == one.method  # kept while the activations fit the budget, as here
    assert (ddp.n_items, ddp.n_tokens) == (one.n_items, one.n_tokens)
    for mine, theirs in zip((ddp.full, *ddp.halves), (one.full, *one.halves)):
        for name, value in mine.to_tensors().items():
            torch.testing.assert_close(value, theirs.to_tensors()[name], rtol=1e-12, atol=1e-15)


if __name__ == "__main__":
    stats = collected(2, "ddp")
    if torch.distributed.get_rank() == 0:
        torch.save(stats.to_tensors(), sys.argv[1])
