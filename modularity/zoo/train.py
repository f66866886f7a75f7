"""Small models the project trains itself, so experiments run offline on trained weights.

Selective pruning only means something on a network that has learnt its tasks, and the
published checkpoints need the network.  These recipes train small models on data that ships
with installed software, on the *train* split of the same split rule the tasks use, so no
image or document a task collects statistics on or evaluates is ever trained on.

================  =====================================================  ======  ========
name              model (MLP neurons)                                     params  data
================  =====================================================  ======  ========
tiny_vit_digits   ViT, 8x8 grey, patch 2, 4 layers x 256 (GELU)            0.20M  digits
tiny_lm_text      Llama, context 128, 4 layers x 512 (gated SiLU), BPE 4k  1.57M  8 domains
================  =====================================================  ======  ========

Trained copies ship in ``modularity/assets/models`` (weights in float16, a few MB), rebuilt
by ``make models`` (``python -m modularity.zoo.train --force --into modularity/assets/models``;
about 5 and 10 minutes on two CPU cores).  ``builtin_model_dir`` uses a copy only if its
``training.json`` records the current recipe: editing a recipe retrains the model on next
use, into the user cache (``$MODULARITY_MODELS_DIR`` overrides it).  Training is seeded and
deterministic on a given machine and library versions.

Images are scaled from [0, 1] to [-1, 1] and no image processor is saved: that is what
``modularity.data.tasks.ImageCollator`` does for models without one.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from modularity.data.corpora import Document
from modularity.data.image_sources import ImageSet, load_image_set, split_indices
from modularity.data.images import IMAGE_SPLITS
from modularity.data.text import local_documents, pack_documents
from modularity.errors import ModularityError, invalid_choice
from modularity.paths import models_root
from modularity.trainer import quiet_lightning

log = logging.getLogger(__name__)

# Trained copies shipped with the package (`make models` rebuilds them), so `make run` does
# not spend its minutes on training; weights are stored in float16 to keep them small.
PACKAGED_MODELS = Path(__file__).resolve().parent.parent / "assets" / "models"
SEED = 0
TRAINING_RECORD = "training.json"
END_OF_TEXT = "<|endoftext|>"
_TMP_PREFIX = ".tmp-"


@dataclass(frozen=True)
class VitRecipe:
    """A ViT classifier trained from scratch on one local image set."""

    image_set: str
    patch_size: int
    hidden_size: int
    intermediate_size: int
    epochs: int
    batch_size: int
    lr: float
    shift: int = 0  # augmentation: random translation by up to this many pixels
    num_layers: int = 4
    num_heads: int = 4
    weight_decay: float = 0.05


@dataclass(frozen=True)
class LmRecipe:
    """A Llama causal LM with its own byte-level BPE, trained on a mix of text domains."""

    domains: tuple[str, ...]
    tokens_per_domain: int  # cap, so the large domains (code, prose) do not swamp the rest
    eval_tokens_per_domain: int
    vocab_size: int
    context: int
    hidden_size: int
    intermediate_size: int
    epochs: int
    batch_size: int
    lr: float
    num_layers: int = 4
    num_heads: int = 4
    weight_decay: float = 0.1


Recipe = VitRecipe | LmRecipe

RECIPES: dict[str, Recipe] = {
    "tiny_vit_digits": VitRecipe(
        image_set="digits",
        patch_size=2,
        hidden_size=64,
        intermediate_size=256,
        epochs=100,
        batch_size=64,
        lr=2e-3,
        shift=1,
    ),
    "tiny_lm_text": LmRecipe(
        domains=("code", "prose", "biology", "chemistry", "physics", "math", "law", "licences"),
        tokens_per_domain=150_000,
        eval_tokens_per_domain=16_384,
        vocab_size=4096,
        context=128,
        hidden_size=128,
        intermediate_size=512,
        epochs=1,
        batch_size=16,
        lr=3e-3,
    ),
}


# --------------------------------------------------------------------------- where models live


def _recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise invalid_choice("builtin model", name, RECIPES) from None


def _recipe_dict(recipe: Recipe) -> dict[str, Any]:
    """The recipe as JSON values (tuples become lists), as it is stored in the record."""
    return json.loads(json.dumps({"kind": type(recipe).__name__, **dataclasses.asdict(recipe)}))


def _is_current(path: Path, recipe: Recipe) -> bool:
    """Whether ``path`` holds a model trained to the full current recipe."""
    try:
        record = json.loads((path / TRAINING_RECORD).read_text())
    except (OSError, ValueError):
        return False
    return record.get("recipe") == _recipe_dict(recipe) and record.get("max_steps") is None


def builtin_model_dir(name: str) -> Path:
    """The ``save_pretrained`` directory of project-trained model ``name``: a copy trained
    here to the current recipe, else the one shipped in the package, else train it now."""
    recipe = _recipe(name)
    for root in (models_root(), PACKAGED_MODELS):
        if _is_current(root / name, recipe):
            return root / name
    path = models_root() / name
    log.info("training built-in model %r into %s (once; takes a few minutes)", name, path)
    install(name)
    return path


def install(name: str, root: Path | None = None, *, max_steps: int | None = None) -> dict[str, Any]:
    """Train ``name`` into a temporary directory beside ``root/name``, then swap it in.

    The model appears through one rename, so a killed training never leaves a half-written
    model where loaders look (only a ``.tmp-*`` directory, which nothing reads).  Returns the
    training record.
    """
    _recipe(name)
    root = models_root() if root is None else root
    root.mkdir(parents=True, exist_ok=True)
    target = root / name
    tmp = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{name}-", dir=root))
    try:
        record = train_model(name, tmp, max_steps=max_steps)
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{name}-old-", dir=root))
            os.replace(target, old / name)
            os.replace(tmp, target)
            shutil.rmtree(old)
        else:
            os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return record


def train_model(name: str, out: Path, *, max_steps: int | None = None) -> dict[str, Any]:
    """Train ``name`` from seed ``SEED`` and save it (and ``training.json``) into ``out``.

    ``max_steps`` cuts training short (for tests); the record notes it.
    """
    recipe = _recipe(name)
    start = time.perf_counter()
    L.seed_everything(SEED, verbose=False)
    if isinstance(recipe, VitRecipe):
        metrics = train_vit(recipe, out, max_steps)
    else:
        metrics = train_lm(recipe, out, max_steps)
    record = {
        "name": name,
        "recipe": _recipe_dict(recipe),
        "seed": SEED,
        "max_steps": max_steps,
        "metrics": metrics,
        "total_seconds": round(time.perf_counter() - start, 1),
        "torch_threads": torch.get_num_threads(),
        "versions": _versions(),
    }
    (out / TRAINING_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    return record


def _versions() -> dict[str, str]:
    import tokenizers
    import transformers

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "lightning": L.__version__,
    }


# --------------------------------------------------------------------------- fitting


class Fit(L.LightningModule):
    """Minimise an HF model's own loss (batches carry their labels) with AdamW, a linear
    warm-up over the first 5% of steps, then cosine decay to zero."""

    def __init__(self, net: nn.Module, lr: float, weight_decay: float, total_steps: int) -> None:
        super().__init__()
        self.net = net
        self.lr = lr
        self.weight_decay = weight_decay
        self.total_steps = total_steps

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.net(**batch).loss
        self.log("loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self) -> Any:
        # Norm gains and biases are not decayed: shrinking them only distorts the model.
        decay = [p for p in self.net.parameters() if p.ndim >= 2]
        rest = [p for p in self.net.parameters() if p.ndim < 2]
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": self.weight_decay}, {"params": rest}],
            lr=self.lr,
            weight_decay=0.0,
        )
        warmup = max(1, self.total_steps // 20)

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = (step - warmup) / max(1, self.total_steps - warmup)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }


def fit(
    net: nn.Module,
    loader: DataLoader,
    recipe: Recipe,
    max_steps: int | None,
) -> float:
    """Train ``net`` for the recipe's epochs (or ``max_steps``) on CPU; returns seconds taken.

    Deterministic algorithms are switched on for the fit and restored afterwards, since the
    flag is process-wide and the analysis that follows may run on a GPU.
    """
    steps = len(loader) * recipe.epochs
    steps = steps if max_steps is None else min(steps, max_steps)
    quiet_lightning()
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=recipe.epochs,
        max_steps=steps,
        deterministic=True,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=True,
    )
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    start = time.perf_counter()
    try:
        trainer.fit(Fit(net, recipe.lr, recipe.weight_decay, steps), loader)
    finally:
        torch.use_deterministic_algorithms(was_deterministic)
    net.eval()
    return round(time.perf_counter() - start, 1)


def save_half(net: nn.Module, out: Path) -> None:
    """Save the weights rounded to float16 (half the size; loaders upcast them to the
    configured dtype) and keep ``net`` on exactly those values, so the metrics measured next
    are the stored model's."""
    net.half().save_pretrained(out)
    net.float()


# --------------------------------------------------------------------------- image models


def image_indices(data: ImageSet, split: str) -> np.ndarray:
    """The images of ``split`` ("train" or "evaluate") under the tasks' own split rule.

    Sets with an official split train on its train images and evaluate on all its test
    images (the tasks collect and evaluate on halves of those); the others use the seeded
    stratified ``IMAGE_SPLITS``, exactly as ``modularity.data.images`` does for tasks.
    """
    if data.origin is not None:
        return np.flatnonzero(data.origin == ("train" if split == "train" else "test"))
    return split_indices(data.labels, IMAGE_SPLITS, seed=SEED)[split]


def _pixels(data: ImageSet, index: np.ndarray) -> torch.Tensor:
    """Images scaled to [-1, 1], as ``ImageCollator`` feeds models without a processor."""
    return torch.from_numpy(data.images[index] * 2 - 1)


def random_shift(pixels: torch.Tensor, shift: int) -> torch.Tensor:
    """Translate each image by up to ``shift`` pixels each way, filling with background."""
    height, width = pixels.shape[-2:]
    padded = F.pad(pixels, (shift, shift, shift, shift), value=-1.0)
    offsets = torch.randint(0, 2 * shift + 1, (len(pixels), 2)).tolist()
    return torch.stack(
        [padded[i, :, dy : dy + height, dx : dx + width] for i, (dy, dx) in enumerate(offsets)]
    )


def _image_batch(items: list[tuple[torch.Tensor, torch.Tensor]], shift: int) -> dict:
    pixels = torch.stack([x for x, _ in items])
    labels = torch.stack([y for _, y in items])
    if shift:
        pixels = random_shift(pixels, shift)
    return {"pixel_values": pixels, "labels": labels}


def vit_network(recipe: VitRecipe, data: ImageSet) -> nn.Module:
    from transformers import ViTConfig, ViTForImageClassification

    _, channels, size, _ = data.images.shape
    config = ViTConfig(
        image_size=size,
        patch_size=recipe.patch_size,
        num_channels=channels,
        hidden_size=recipe.hidden_size,
        intermediate_size=recipe.intermediate_size,
        num_hidden_layers=recipe.num_layers,
        num_attention_heads=recipe.num_heads,
        num_labels=len(data.class_names),
        id2label=dict(enumerate(data.class_names)),
        label2id={name: i for i, name in enumerate(data.class_names)},
    )
    return ViTForImageClassification(config)


@torch.no_grad()
def classifier_metrics(net: nn.Module, pixels: torch.Tensor, labels: torch.Tensor) -> dict:
    """Top-1 accuracy and mean cross-entropy of an image classifier."""
    logits = torch.cat([net(pixel_values=chunk).logits for chunk in pixels.split(512)])
    return {
        "accuracy": float((logits.argmax(-1) == labels).float().mean()),
        "loss": float(F.cross_entropy(logits, labels)),
        "n_images": len(labels),
    }


def train_vit(recipe: VitRecipe, out: Path, max_steps: int | None) -> dict[str, Any]:
    """Train and save a ViT; returns its accuracy on the held-out images."""
    data = load_image_set(recipe.image_set)
    train, held_out = image_indices(data, "train"), image_indices(data, "evaluate")
    labels = torch.from_numpy(data.labels.copy())
    loader = DataLoader(
        TensorDataset(_pixels(data, train), labels[train]),
        batch_size=recipe.batch_size,
        shuffle=True,
        collate_fn=partial(_image_batch, shift=recipe.shift),
    )
    net = vit_network(recipe, data)
    seconds = fit(net, loader, recipe, max_steps)
    save_half(net, out)
    metrics = classifier_metrics(net, _pixels(data, held_out), labels[held_out])
    return {"held_out": metrics, "train_images": len(train), "train_seconds": seconds}


# --------------------------------------------------------------------------- language model


def domain_documents(domain: str, split: str) -> list[Document]:
    """One split of a text domain: the same documents, in the same seeded order, as the
    task of that corpus reads (``modularity.data.text.local_documents``)."""
    task = OmegaConf.create({"name": domain, "local": {"corpus": domain}, "seed": SEED})
    return local_documents(task, split)


def _capped_texts(docs: Sequence[Document], max_chars: int) -> Iterator[str]:
    total = 0
    for doc in docs:
        if total >= max_chars:
            return
        total += len(doc.text)
        yield doc.text


def train_tokenizer(texts: Callable[[], Iterator[str]], recipe: LmRecipe) -> Any:
    """A byte-level BPE (GPT-2 style pre-tokenisation) whose only special token,
    ``<|endoftext|>``, is BOS, EOS and padding; nothing is added to encoded text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=recipe.vocab_size,
        special_tokens=[END_OF_TEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(texts(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token=END_OF_TEXT,
        eos_token=END_OF_TEXT,
        pad_token=END_OF_TEXT,
        model_max_length=recipe.context,
    )


def lm_network(recipe: LmRecipe, tokenizer: Any) -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    eos = tokenizer.eos_token_id
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=recipe.hidden_size,
        intermediate_size=recipe.intermediate_size,
        num_hidden_layers=recipe.num_layers,
        num_attention_heads=recipe.num_heads,
        num_key_value_heads=recipe.num_heads,
        max_position_embeddings=recipe.context,
        tie_word_embeddings=True,
        bos_token_id=eos,
        eos_token_id=eos,
        pad_token_id=eos,
    )
    return LlamaForCausalLM(config)


class _Blocks(TensorDataset):
    """Token blocks as causal-LM batches (the model shifts the labels itself)."""

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        (block,) = super().__getitem__(i)
        return {"input_ids": block, "labels": block}


@torch.no_grad()
def lm_loss(net: nn.Module, blocks: torch.Tensor, batch_size: int = 32) -> float:
    """Mean next-token cross-entropy (nats) over ``blocks`` (all the same length)."""
    losses = [
        float(net(input_ids=chunk, labels=chunk).loss) * len(chunk)
        for chunk in blocks.split(batch_size)
    ]
    return sum(losses) / len(blocks)


def unigram_baseline(train: torch.Tensor, held_out: torch.Tensor, vocab: int) -> dict:
    """The train split's unigram entropy, and the cross-entropy of held-out tokens under
    that (add-one smoothed) distribution: what a model ignoring context would score."""
    counts = torch.bincount(train.flatten(), minlength=vocab).double()
    p = counts / counts.sum()
    entropy = float(-(p[p > 0] * p[p > 0].log()).sum())
    smoothed = (counts + 1) / (counts.sum() + vocab)
    cross_entropy = float(-smoothed.log()[held_out[:, 1:].flatten()].mean())
    return {"unigram_entropy": entropy, "unigram_loss": cross_entropy}


def train_lm(recipe: LmRecipe, out: Path, max_steps: int | None) -> dict[str, Any]:
    """Train and save the LM and its tokenizer; returns held-out loss per domain and overall
    beside the unigram baseline."""
    train_docs = {d: domain_documents(d, "train") for d in recipe.domains}
    # ~4 characters per token: the tokenizer sees roughly the text the model trains on.
    chars = 4 * recipe.tokens_per_domain

    def texts() -> Iterator[str]:
        for docs in train_docs.values():
            yield from _capped_texts(docs, chars)

    tokenizer = train_tokenizer(texts, recipe)
    train = {
        d: pack_documents(docs, tokenizer, recipe.context, recipe.tokens_per_domain)
        for d, docs in train_docs.items()
    }
    held_out = {
        d: pack_documents(
            domain_documents(d, "evaluate"),
            tokenizer,
            recipe.context,
            recipe.eval_tokens_per_domain,
        )
        for d in recipe.domains
    }
    all_train = torch.cat(list(train.values()))
    loader = DataLoader(_Blocks(all_train), batch_size=recipe.batch_size, shuffle=True)
    net = lm_network(recipe, tokenizer)
    seconds = fit(net, loader, recipe, max_steps)
    save_half(net, out)
    tokenizer.save_pretrained(out)
    per_domain = {
        d: {
            "loss": lm_loss(net, blocks),
            "train_tokens": train[d].numel(),
            "eval_tokens": blocks.numel(),
            **unigram_baseline(all_train, blocks, len(tokenizer)),
        }
        for d, blocks in held_out.items()
    }
    all_held_out = torch.cat(list(held_out.values()))
    overall = {
        "loss": lm_loss(net, all_held_out),
        **unigram_baseline(all_train, all_held_out, len(tokenizer)),
    }
    return {
        "held_out": overall,
        "per_domain": per_domain,
        "train_tokens": all_train.numel(),
        "train_seconds": seconds,
    }


# --------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m modularity.zoo.train [names...] [--force]``: train and print the metrics."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"default: all of {', '.join(RECIPES)}")
    parser.add_argument("--force", action="store_true", help="retrain models already saved")
    parser.add_argument(
        "--into", type=Path, default=None, help="models directory (default: the user cache)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        recipes = {name: _recipe(name) for name in args.names or RECIPES}
        root = args.into or models_root()
        for name, recipe in recipes.items():
            path = root / name
            if args.force or not _is_current(path, recipe):
                install(name, root)
            metrics = json.loads((path / TRAINING_RECORD).read_text())["metrics"]
            print(f"{name} ({path}):\n{json.dumps(metrics, indent=2)}")
    except ModularityError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
