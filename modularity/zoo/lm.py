"""Train a small Llama causal LM, with its own byte-level BPE, on the text domains' ``train``
pools, and measure it on their ``evaluate`` pools beside a unigram baseline."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from modularity.data.corpora import Document
from modularity.data.packing import pack_documents
from modularity.data.pools import pool_documents
from modularity.data.sources import LocalCorpora
from modularity.zoo.fitting import FitResult, fit
from modularity.zoo.recipes import LmRecipe

END_OF_TEXT = "<|endoftext|>"
EVAL_BATCH = 32


def domain_documents(domain: str, split: str, seed: int) -> list[Document]:
    """One pool of a text domain: the same documents, in the same seeded order, as the task
    of that corpus reads (``modularity.data.pools.pool_documents``)."""
    return list(pool_documents(LocalCorpora(domain), split, seed))


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
    """The untrained LM: the same weights for the same recipe (its seed), tokenizer and
    library versions, which is what checkpoint 0 is checked against."""
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
    torch.manual_seed(recipe.seed)
    return LlamaForCausalLM(config)


class _Blocks(TensorDataset):
    """Token blocks as causal-LM batches (the model shifts the labels itself)."""

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        (block,) = super().__getitem__(i)
        return {"input_ids": block, "labels": block}


@torch.no_grad()
def lm_loss(net: nn.Module, blocks: torch.Tensor) -> float:
    """Mean next-token cross-entropy (nats) over ``blocks`` (all the same length)."""
    losses = [
        float(net(input_ids=chunk, labels=chunk).loss) * len(chunk)
        for chunk in blocks.split(EVAL_BATCH)
    ]
    return sum(losses) / len(blocks)


def unigram_baseline(train: torch.Tensor, held_out: torch.Tensor, vocab: int) -> dict:
    """The train pool's unigram entropy, and the cross-entropy of held-out tokens under
    that (add-one smoothed) distribution: what a model ignoring context would score."""
    counts = torch.bincount(train.flatten(), minlength=vocab).double()
    p = counts / counts.sum()
    entropy = float(-(p[p > 0] * p[p > 0].log()).sum())
    smoothed = (counts + 1) / (counts.sum() + vocab)
    cross_entropy = float(-smoothed.log()[held_out[:, 1:].flatten()].mean())
    return {"unigram_entropy": entropy, "unigram_loss": cross_entropy}


def train_lm(
    recipe: LmRecipe, out: Path, max_steps: int | None
) -> tuple[dict[str, Any], FitResult]:
    """Train and save the LM, its tokenizer and checkpoints; returns held-out loss per
    domain and overall beside the unigram baseline, and the fit."""
    train_docs = {d: domain_documents(d, "train", recipe.seed) for d in recipe.domains}
    # ~4 characters per token: the tokenizer sees roughly the text the model trains on.
    chars = 4 * recipe.tokens_per_domain

    def texts() -> Iterator[str]:
        for docs in train_docs.values():
            yield from _capped_texts(docs, chars)

    tokenizer = train_tokenizer(texts, recipe)
    train = {
        d: pack_documents(docs, tokenizer, recipe.context, recipe.tokens_per_domain).input_ids
        for d, docs in train_docs.items()
    }
    held_out = {
        d: pack_documents(
            domain_documents(d, "evaluate", recipe.seed),
            tokenizer,
            recipe.context,
            recipe.eval_tokens_per_domain,
        ).input_ids
        for d in recipe.domains
    }
    all_train = torch.cat(list(train.values()))
    all_held_out = torch.cat(list(held_out.values()))
    net = lm_network(recipe, tokenizer)
    loader = DataLoader(_Blocks(all_train), batch_size=recipe.batch_size, shuffle=True)
    result = fit(
        net,
        loader,
        recipe,
        out,
        lambda n: {"loss": lm_loss(n, all_held_out)},
        max_steps=max_steps,
        companions=[tokenizer],
    )
    per_domain = {
        d: {
            "loss": lm_loss(net, blocks),
            "train_tokens": train[d].numel(),
            "eval_tokens": blocks.numel(),
            **unigram_baseline(all_train, blocks, len(tokenizer)),
        }
        for d, blocks in held_out.items()
    }
    overall = {**result.final_metric, **unigram_baseline(all_train, all_held_out, len(tokenizer))}
    metrics = {"held_out": overall, "per_domain": per_domain, "train_tokens": all_train.numel()}
    return metrics, result
