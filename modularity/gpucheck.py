"""``python -m modularity.gpucheck`` (``make gpu-check``): what a GPU gives the paper's runs.

On the largest configured model that is available offline and fits (Mistral 7B when its
weights are local, else SmolLM2-135M), in bf16: a statistics-collection pass (the backbone
with the neuron-site hooks and the accumulator that collection uses) and an evaluation
forward (with the LM head), each timed as tokens per second and model FLOP/s, with the
fraction of the device's peak dense bf16 FLOP/s; the peak GPU memory; and the time of a
balanced k-means of a Mistral-sized random layer. Without CUDA it prints one line and exits 0.

Plain torch loops rather than Lightning's Trainer: the Trainer's setup, callbacks and
progress bar would sit inside the timed region, and ``precision="bf16-true"`` amounts to bf16
weights, which the model is loaded with here. Inputs are random token ids: the arithmetic,
and so the timing, does not depend on the text.
"""

from __future__ import annotations

import math
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from modularity.models.loading import LoadedModel

# Peak dense bf16 tensor-core FLOP/s in TFLOP/s (NVIDIA datasheets quote twice these "with
# sparsity"; GeForce cards at FP32 accumulate, as torch uses), matched in order against
# torch.cuda.get_device_name(). A10G: NVIDIA publishes no sheet; the figure commonly cited.
PEAK_BF16_TFLOPS: tuple[tuple[str, float, str], ...] = (
    (r"H100.*NVL", 835.5, "H100 NVL"),
    (r"H100.*PCIe", 756.0, "H100 PCIe"),
    (r"H100", 989.4, "H100 SXM"),
    (r"GH200", 989.4, "GH200"),
    (r"H200.*NVL", 835.5, "H200 NVL"),
    (r"H200", 989.4, "H200 SXM"),
    (r"A100", 312.0, "A100"),
    (r"A10G", 70.0, "A10G"),
    (r"\bA10\b", 125.0, "A10"),
    (r"\bA40\b", 149.7, "A40"),
    (r"L40S", 362.05, "L40S"),
    (r"\bL40\b", 181.05, "L40"),
    (r"\bL4\b", 121.0, "L4"),
    (r"RTX A6000", 154.8, "RTX A6000"),
    (r"RTX 4090", 165.2, "RTX 4090"),
    (r"RTX 3090", 71.0, "RTX 3090"),
)
MODELS = ("mistral7b", "smollm2_135m")  # largest first
SEQUENCE_LENGTH = 512  # the paper experiment's block size
TOKENS_PER_PASS = 65536  # tokens timed per pass, after one warm-up batch
KMEANS_SHAPE = (14336, 4096, 128)  # a Mistral 7B layer's neurons x d_model, into 128 experts


def peak_bf16_tflops(device_name: str) -> tuple[float, str] | None:
    """Peak dense bf16 TFLOP/s and the matched card, or None for a card not in the table."""
    for pattern, tflops, card in PEAK_BF16_TFLOPS:
        if re.search(pattern, device_name):
            return tflops, card
    return None


def linear_parameters(module: nn.Module) -> int:
    """Weights of the module's linear layers: its multiply-adds per token (a tied LM head is
    a linear layer, counted; an embedding lookup is not a matmul, not counted)."""
    return sum(m.weight.numel() for m in module.modules() if isinstance(m, nn.Linear))


def model_flops_per_second(linear_params: int, tokens: int, seconds: float) -> float:
    """Model FLOP/s = 2 x linear-layer parameters x tokens / seconds (a multiply-add is two
    FLOPs; attention scores, a few percent at 512 tokens, are not counted)."""
    return 2.0 * linear_params * tokens / seconds


@dataclass(frozen=True)
class PassTiming:
    """One timed pass: ``tokens`` through a module of ``linear_params`` in ``seconds``."""

    name: str
    tokens: int
    seconds: float
    linear_params: int

    def line(self, peak: tuple[float, str] | None) -> str:
        flops = model_flops_per_second(self.linear_params, self.tokens, self.seconds)
        share = "peak unknown" if peak is None else f"{flops / (peak[0] * 1e12):.1%} of peak"
        return (
            f"  {self.name:<19} {self.tokens / self.seconds:>12,.0f} tokens/s"
            f"  {flops / 1e12:8.1f} TFLOP/s  {share}"
        )


def drain(device: torch.device) -> None:
    """Wait for the device's queued work, so that wall time measures it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(run: Callable[[torch.Tensor], object], batches: Sequence[torch.Tensor]) -> float:
    """Seconds for ``run`` over ``batches`` after one warm-up call, the device drained."""
    device = batches[0].device
    run(batches[0])
    drain(device)
    start = time.perf_counter()
    for batch in batches:
        run(batch)
    drain(device)
    return time.perf_counter() - start


def load_offline(name: str) -> tuple[DictConfig, LoadedModel] | str:
    """Model config ``name`` and the model, in bf16 on the GPU, or why it cannot be used."""
    from modularity.config import load_model_config
    from modularity.errors import ModularityError
    from modularity.infra.hub import in_hub_cache, is_local_path
    from modularity.models.loading import load_model, resolve_path

    cfg = load_model_config(name, {"dtype": "bfloat16"})
    try:
        path = resolve_path(cfg.path)
    except ModularityError as err:
        return str(err)
    if not (is_local_path(path) or in_hub_cache(path, "model")):
        return f"{path} is not in the local Hugging Face cache"
    loaded = load_model(cfg)
    try:
        loaded.model.to("cuda")
    except torch.cuda.OutOfMemoryError:
        loaded.model.to("cpu")
        torch.cuda.empty_cache()
        return "does not fit in GPU memory"
    return cfg, loaded


def measure_model(
    cfg: DictConfig,
    loaded: LoadedModel,
    peak: tuple[float, str] | None,
    tokens_per_pass: int = TOKENS_PER_PASS,
) -> list[str]:
    """Time a statistics pass and an evaluation forward of about ``tokens_per_pass`` tokens
    on the model's device; report them and, on a GPU, the peak memory."""
    from modularity.collect import collect_statistics, plan_for
    from modularity.data.tasks import text_loader

    model, adapter = loaded.model, loaded.adapter
    weights = next(model.parameters())
    device, dtype = weights.device, str(weights.dtype).removeprefix("torch.")
    n_batches = math.ceil(tokens_per_pass / (cfg.batch_size * SEQUENCE_LENGTH))
    generator = torch.Generator(device=device).manual_seed(0)
    batches = [
        torch.randint(
            model.config.vocab_size,
            (cfg.batch_size, SEQUENCE_LENGTH),
            device=device,
            generator=generator,
        )
        for _ in range(n_batches)
    ]
    tokens = n_batches * cfg.batch_size * SEQUENCE_LENGTH
    blocks = torch.cat(batches).cpu()
    n_blocks = blocks.shape[0]
    loader = text_loader(
        {
            "input_ids": blocks,
            "unit": torch.arange(n_blocks),
            "half": torch.arange(n_blocks) % 2,
            "requested_tokens": torch.tensor(tokens),
        },
        cfg.batch_size,
    )
    trainer = {
        "accelerator": "gpu" if device.type == "cuda" else "cpu",
        "devices": 1,
        "precision": "bf16-true" if dtype == "bfloat16" else "32-true",
        "enable_progress_bar": False,
    }

    def collection_seconds() -> float:
        """The whole statistics collection (pilot and pass) through Lightning, once."""
        drain(device)
        start = time.perf_counter()
        collect_statistics(loaded, loader, trainer, stage="gpu check")
        drain(device)
        return time.perf_counter() - start

    def evaluation_forward(ids: torch.Tensor) -> torch.Tensor:
        logits = model(input_ids=ids).logits
        return (logits[:, :-1].argmax(-1) == ids[:, 1:]).float().mean()

    backbone, whole = linear_parameters(model.base_model), linear_parameters(model)
    on_gpu = device.type == "cuda"
    if on_gpu:
        torch.cuda.reset_peak_memory_stats(device)
    with torch.inference_mode():
        passes = [
            PassTiming("evaluation forward", tokens, timed(evaluation_forward, batches), whole),
            PassTiming("statistics collection", tokens, collection_seconds(), backbone),
        ]
    lines = [
        f"{cfg.name}: {dtype}, {adapter.n_layers} layers x {adapter.n_neurons} neurons, "
        f"{whole / 1e6:,.1f}M linear-layer parameters ({backbone / 1e6:,.1f}M without the LM "
        f"head); {tokens:,} random tokens a pass, in batches of {cfg.batch_size} x "
        f"{SEQUENCE_LENGTH}",
        *(timing.line(peak) for timing in passes),
    ]
    plan = plan_for(loaded, loader, trainer, None, True)
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    lines.append(
        f"  collection state    {plan.state_bytes / 2**30:.2f} GiB vs weights "
        f"{weight_bytes / 2**30:.2f} GiB ({plan.describe()})"
    )
    if on_gpu:
        peak_memory = torch.cuda.max_memory_allocated(device) / 2**30
        lines.append(f"  peak GPU memory     {peak_memory:.2f} GiB")
    return lines


def kmeans_seconds() -> float:
    """Seconds for a balanced k-means of a random Mistral-sized layer on the GPU."""
    from modularity.algorithms.kmeans import balanced_kmeans

    n_neurons, d_model, n_experts = KMEANS_SHAPE
    weights = torch.randn(n_neurons, d_model, generator=torch.Generator().manual_seed(0))
    torch.cuda.synchronize()
    start = time.perf_counter()
    balanced_kmeans(weights, n_experts, device="cuda")
    torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> int:
    if not torch.cuda.is_available():
        print("gpu-check: no CUDA GPU here (torch.cuda.is_available() is False); nothing measured")
        return 0
    from modularity.infra.hub import offline_mode

    with offline_mode("gpu-check reads local files only"):
        measure_offline()
    return 0


def measure_offline() -> None:
    """Print the peak, the largest local model's FLOP/s, and the k-means time."""
    device = torch.cuda.get_device_name()
    peak = peak_bf16_tflops(device)
    print(
        f"GPU: {device}; "
        + (
            f"peak dense bf16 {peak[0]:,.1f} TFLOP/s ({peak[1]})"
            if peak is not None
            else "peak bf16 FLOP/s unknown for this card (not in gpucheck.PEAK_BF16_TFLOPS)"
        )
    )
    print("model FLOP/s = 2 x linear-layer parameters x tokens / seconds (attention not counted)")
    for name in MODELS:
        found = load_offline(name)
        if isinstance(found, str):
            print(f"{name}: skipped, {found}")
            continue
        cfg, loaded = found
        print("\n".join(measure_model(cfg, loaded, peak)))
        loaded.model.to("cpu")
        break
    torch.cuda.empty_cache()
    n_neurons, d_model, n_experts = KMEANS_SHAPE
    print(
        f"balanced k-means of a random {n_neurons} x {d_model} layer into {n_experts} experts "
        f"on cuda: {kmeans_seconds():.2f} s"
    )


if __name__ == "__main__":
    sys.exit(main())
