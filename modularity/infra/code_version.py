"""Versions of cached values derived from the code that produces them, never bumped by hand.

A cache entry is keyed by its settings and by ``code_version`` of its producers: a digest of
the bytecode (comments, docstrings, formatting and line numbers left out) of the modules
that define the producing functions and of every module of the same packages they import,
directly or not, at the top or inside a function. So any change to what can compute a value
gives it a new key, and an edit that cannot (a comment, a docstring, a reformat) keeps the
cache. Bytecode differs between Python versions, so each version keys its own entries.
"""

from __future__ import annotations

import dis
import functools
import hashlib
import importlib.util
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import CodeType
from typing import Any

DIGEST_CHARS = 16


def code_version(*producers: Callable[..., Any] | str) -> str:
    """Hex digest of the code behind ``producers`` (functions, classes or dotted module names)
    and the modules of their packages they import."""
    roots = sorted({p if isinstance(p, str) else _unwrapped(p).__module__ for p in producers})
    digest = hashlib.sha256()
    for name in _closure(roots):
        path = _module_file(name)
        digest.update(name.encode() + b"\0")
        digest.update(_code_digest(str(path), *_stamp(path)).encode())
    return digest.hexdigest()[:DIGEST_CHARS]


def _unwrapped(producer: Callable[..., Any]) -> Callable[..., Any]:
    """The function a ``functools.partial`` wraps (a partial names no module of its own)."""
    while isinstance(producer, functools.partial):
        producer = producer.func
    return producer


def _closure(roots: list[str]) -> list[str]:
    """``roots`` and every module of their top-level packages they import, sorted."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = _module_file(name)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        top = name.partition(".")[0]
        for imported in _imports(str(path), *_stamp(path), package):
            if imported.partition(".")[0] == top and imported not in seen:
                todo.append(imported)
    return sorted(seen)


def _module_file(name: str) -> Path:
    """The source file of module ``name``: an imported module's own, else found from its
    top-level package's folder without importing anything more."""
    loaded = getattr(sys.modules.get(name), "__file__", None)
    if loaded and loaded.endswith(".py"):
        return Path(loaded)
    top, _, rest = name.partition(".")
    base = _package_dir(top)
    if base is not None:
        stem = base.joinpath(*rest.split("."))
        candidates = [stem.with_suffix(".py")] if rest else []
        for path in [*candidates, stem / "__init__.py"]:
            if path.is_file():
                return path
    raise ModuleNotFoundError(f"no Python source for module {name!r} to version its cache")


@functools.cache
def _package_dir(top: str) -> Path | None:
    """The folder of top-level package ``top`` (None for a module or a namespace)."""
    spec = importlib.util.find_spec(top)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _stamp(path: Path) -> tuple[int, int]:
    """What tells a file's edit apart, for the per-process memo of parsed files."""
    stat = path.stat()
    return stat.st_mtime_ns, stat.st_size


@functools.cache
def _compiled(path: str, mtime_ns: int, size: int) -> CodeType:
    """The module's bytecode without docstrings (``optimize=2``)."""
    return compile(Path(path).read_bytes(), path, "exec", dont_inherit=True, optimize=2)


@functools.cache
def _code_digest(path: str, mtime_ns: int, size: int) -> str:
    """SHA-256 of the module's bytecode without docstrings, line numbers or file name, so
    that only a change to what the code does changes it."""
    digest = hashlib.sha256()
    _feed(digest, _compiled(path, mtime_ns, size))
    return digest.hexdigest()


def _feed(digest: Any, value: object) -> None:
    """Add ``value`` (a code object or a constant of one) to ``digest`` the same way in every
    process: sets in sorted order, since their iteration order follows the hash seed."""
    if isinstance(value, CodeType):
        digest.update(b"code(")
        for field in _CODE_FIELDS:
            digest.update(repr(getattr(value, field)).encode() + b",")
        _feed(digest, value.co_consts)
        digest.update(b")")
    elif isinstance(value, tuple | frozenset):
        items = []
        for item in value:
            item_digest = hashlib.sha256()
            _feed(item_digest, item)
            items.append(item_digest.digest())
        digest.update(type(value).__name__.encode() + b"(")
        digest.update(b"".join(sorted(items) if isinstance(value, frozenset) else items) + b")")
    else:
        digest.update(f"{type(value).__name__}:{value!r};".encode())


# What a code object does, besides its constants: not where it stands (file, lines).
_CODE_FIELDS = (
    "co_code",
    "co_names",
    "co_varnames",
    "co_freevars",
    "co_cellvars",
    "co_argcount",
    "co_posonlyargcount",
    "co_kwonlyargcount",
    "co_flags",
    "co_name",
    "co_exceptiontable",
)


@functools.cache
def _imports(path: str, mtime_ns: int, size: int, package: str) -> tuple[str, ...]:
    """Dotted names of the modules of ``package``'s top-level package that a file imports,
    at the top or in a function: ``from a import b`` counts ``a.b`` where that is a module,
    else ``a``."""
    top = package.partition(".")[0]
    found = set()
    for name, level, fromlist in _import_statements(_compiled(path, mtime_ns, size)):
        if level:
            parent = package.rsplit(".", level - 1)[0]
            name = f"{parent}.{name}" if name else parent
        if name.partition(".")[0] != top:
            continue
        submodules = [f"{name}.{item}" for item in fromlist if _is_module(f"{name}.{item}")]
        if len(submodules) < len(fromlist) or not fromlist:  # names defined in ``name`` itself
            found.add(name)
        found.update(submodules)
    return tuple(sorted(found))


_IMPORT_NAME = dis.opmap["IMPORT_NAME"]


def _import_statements(code: CodeType) -> Iterator[tuple[str, int, tuple[str, ...]]]:
    """(module, level, names) of every import in ``code`` and the code nested in it. An
    import loads its level and its names just before IMPORT_NAME; only code objects that
    hold the opcode are disassembled (most functions import nothing)."""
    if _IMPORT_NAME in code.co_code[::2]:
        previous: list[Any] = [None, None]
        for instruction in dis.get_instructions(code):
            if instruction.opcode == _IMPORT_NAME:
                level, names = (i.argval if i is not None else None for i in previous)
                yield instruction.argval, level if isinstance(level, int) else 0, names or ()
            previous = [previous[1], instruction]
    for const in code.co_consts:
        if isinstance(const, CodeType):
            yield from _import_statements(const)


def _is_module(name: str) -> bool:
    try:
        _module_file(name)
    except ModuleNotFoundError:
        return False
    return True
