"""Versions of cached values derived from the code that produces them, never bumped by hand.

A cache entry is keyed by its settings and by ``code_version`` of its producers: a digest of
the bytecode (comments, docstrings, formatting and line numbers left out) of the modules
that define the producing functions and of every module of the same packages they import,
directly or not, at the top or inside a function. So any change to what can compute a value
gives it a new key, and an edit that cannot (a comment, a docstring, a reformat) keeps the
cache. Bytecode differs between Python versions, so each version keys its own entries.
"""

from __future__ import annotations

import ast
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
def _code_digest(path: str, mtime_ns: int, size: int) -> str:
    """SHA-256 of the module's bytecode without docstrings (``optimize=2``), line numbers or
    file name, so that only a change to what the code does changes it."""
    code = compile(Path(path).read_bytes(), path, "exec", dont_inherit=True, optimize=2)
    digest = hashlib.sha256()
    _feed(digest, code)
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
    for node in _statements(ast.parse(Path(path).read_bytes(), filename=path).body):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0]
                base = f"{parent}.{base}" if base else parent
            if base.partition(".")[0] != top:
                continue
            submodules = [f"{base}.{a.name}" for a in node.names if _is_module(f"{base}.{a.name}")]
            found.update(submodules if len(submodules) == len(node.names) else [base, *submodules])
    return tuple(sorted(name for name in found if name.partition(".")[0] == top))


def _statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Every statement of ``body`` and of the blocks nested in it (expressions, where no
    import can stand, are not visited)."""
    for statement in body:
        yield statement
        for field in ("body", "orelse", "finalbody", "handlers", "cases"):
            block = getattr(statement, field, None)
            if isinstance(block, list):
                yield from _statements(block)


def _is_module(name: str) -> bool:
    try:
        _module_file(name)
    except ModuleNotFoundError:
        return False
    return True
