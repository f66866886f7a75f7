"""Evaluation memory with a 262k-token vocabulary: peak memory of scoring one batch against
the model's own forward pass on it.

A Gemma-3-270M-shaped random model (18 layers, d_model 640, vocabulary 262,144; random
weights: memory does not depend on them) and a batch of 8 x 128 tokens, as ``gemma3_270m``
evaluates. Each variant runs in a fresh process: the model and batch are built, then the
peak resident memory above that baseline is measured (Linux: ``VmHWM`` after resetting it
through ``/proc/self/clear_refs``). Variants: the model's forward (the logits of every
position); the evaluation step (``Evaluation.predict_step``: backbone, then the LM head over
chunks of positions); the evaluation step with one chunk for the whole batch (what scoring
the full logits costs). Prints the ratios to the forward; asserts nothing. Target: the
evaluation step <= 1.2 x the forward.
"""

from __future__ import annotations

import argparse
import gc
import re
import subprocess
import sys
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM

from modularity import evaluate as evaluate_module
from modularity.evaluate import Evaluation
from modularity.models.adapter import ModelAdapter
from modularity.models.loading import LoadedModel

TARGET = 1.2
VARIANTS = {
    "forward": "model forward (all logits)",
    "evaluation": "evaluation step (chunked head)",
    "unchunked": "evaluation step, one chunk",
}
GEMMA3_270M = dict(
    vocab_size=262144,
    hidden_size=640,
    intermediate_size=2048,
    num_hidden_layers=18,
    num_attention_heads=4,
    num_key_value_heads=1,
    head_dim=256,
    query_pre_attn_scalar=256,
    sliding_window=512,
    max_position_embeddings=32768,
)


def memory_kb(field: str) -> int:
    status = Path("/proc/self/status").read_text()
    return int(re.search(rf"{field}:\s+(\d+)", status).group(1))


def measure(variant: str, batch_size: int, length: int) -> float:
    """Peak resident memory (MB) of ``variant`` above the memory of the built model."""
    torch.manual_seed(0)
    config = AutoConfig.for_model("gemma3_text", **GEMMA3_270M)
    model = AutoModelForCausalLM.from_config(config).eval()
    loaded = LoadedModel(model, ModelAdapter.for_model(model))
    ids = torch.randint(0, config.vocab_size, (batch_size, length))
    batch = {"input_ids": ids, "unit": torch.arange(batch_size)}
    module = Evaluation(loaded, batch_size, torch.arange(50))
    if variant == "unchunked":
        evaluate_module.ELEMENTS_PER_CHUNK = batch_size * length * config.vocab_size
    gc.collect()
    baseline = memory_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    with torch.inference_mode():
        if variant == "forward":
            model(input_ids=ids)
        else:
            module.predict_step(batch, 0)
    return (memory_kb("VmHWM") - baseline) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--child", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(measure(args.child, args.batch_size, args.length))
        return
    if not Path("/proc/self/clear_refs").exists():
        print("bench_eval_memory: needs Linux's /proc/self/clear_refs; skipped")
        return
    peaks = {}
    for variant in VARIANTS:
        command = [sys.executable, __file__, "--child", variant]
        command += ["--batch-size", str(args.batch_size), "--length", str(args.length)]
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        peaks[variant] = float(out.split()[-1])
    logits_mb = args.batch_size * args.length * GEMMA3_270M["vocab_size"] * 4 / 2**20
    print(
        f"Gemma-3-270M-shaped random model, batch {args.batch_size} x {args.length} tokens "
        f"(fp32 logits of the batch: {logits_mb:.0f} MB); peak memory above the loaded model:"
    )
    for variant, label in VARIANTS.items():
        ratio = peaks[variant] / peaks["forward"]
        verdict = "" if variant != "evaluation" else ("ok" if ratio <= TARGET else "MISS")
        print(f"  {label:32s} {peaks[variant]:8.0f} MB   ratio {ratio:.2f}  {verdict}")
    print(f"  target: evaluation step <= {TARGET} x the forward")


if __name__ == "__main__":
    main()
