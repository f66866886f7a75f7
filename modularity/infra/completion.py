"""Tab completion for the ``modularity`` command in a few hundredths of a second.

Hydra answers each TAB (``modularity -sc query=bash``, from ``eval "$(modularity -sc
install=bash)"``) by importing itself and composing the whole config: about a second of
CPU, several on a busy machine. The answer depends only on the config files and the words
already typed, so Hydra's raw material is kept in the user cache: the config groups and
their options (once per version of the configs), and the composed config of the words
typed so far (once per distinct set of them). A TAB then reads a JSON file and answers
exactly as Hydra's own completion would (``tests/test_package.py`` compares the two).

Lines this does not model (flags such as ``-m``, file paths, ``~`` deletions, search-path
overrides) go to Hydra's own completion. Imports only the standard library at the top:
importing Hydra is most of what a TAB used to cost.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

from modularity.infra.paths import CONF_DIR, PACKAGE_DIR

ENV_VAR = "MODULARITY_COMPLETION_DIR"
# Composed configs kept per index (one per distinct set of earlier words).
MAX_CONFIGS = 64
_APP_NAME = re.compile(r"^\s*[\w_\-=\./]+\s*(.*)")  # Hydra's own: the program, then the rest


def fingerprint() -> str:
    """The version of everything an answer depends on: Hydra, the package's version, its
    config files and its code, and the installed Hydra plug-ins (one may add config groups
    to the search path): sizes and modification times."""
    from importlib.metadata import version

    digest = hashlib.sha256(f"{version('hydra-core')}\0".encode())
    from modularity import __version__

    digest.update(__version__.encode())
    # The configs, and the code that generates options.
    for root, pattern in ((CONF_DIR, "*"), (PACKAGE_DIR, "*.py"), *_hydra_plugin_dirs()):
        for path in sorted(root.rglob(pattern)):
            stat = path.stat()
            name = f"{root.name}/{path.relative_to(root)}"
            digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:24]


def _hydra_plugin_dirs() -> list[tuple[Path, str]]:
    """Every directory of the ``hydra_plugins`` namespace, found without importing one."""
    import importlib.util

    spec = importlib.util.find_spec("hydra_plugins")
    locations = spec.submodule_search_locations if spec is not None else None
    return [(Path(p), "*") for p in sorted(locations or []) if Path(p).is_dir()]


def index_path() -> Path:
    from modularity.infra.paths import user_cache_dir

    return user_cache_dir("completion", ENV_VAR) / f"{fingerprint()}.json"


# ------------------------------------------------------------------ Hydra's raw material
def _loader() -> Any:
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.utils import create_config_search_path

    from modularity.config import register_configs

    register_configs()
    return ConfigLoaderImpl(config_search_path=create_config_search_path(f"file://{CONF_DIR}"))


def _groups(loader: Any) -> dict[str, dict[str, list[str]]]:
    """Every config group (``""`` the root): its options and its subgroups."""
    from hydra.core.object_type import ObjectType

    found: dict[str, dict[str, list[str]]] = {}
    pending = [""]
    while pending:
        group = pending.pop()
        entry = {
            kind: loader.get_group_options(group, results_filter=filt, config_name="config")
            for kind, filt in (("options", ObjectType.CONFIG), ("groups", ObjectType.GROUP))
        }
        found[group] = entry
        pending += [f"{group}/{g}" if group else g for g in entry["groups"]]
    return found


def _node(config: Any, path: str, value: Any) -> dict[str, Any]:
    """A config node as completion reads it: its children by their unresolved kind, and
    the value ``OmegaConf.select`` resolves it to (``"error"`` when that fails)."""
    from omegaconf import DictConfig, ListConfig, MissingMandatoryValue, OmegaConf

    node: dict[str, Any] = {}
    if isinstance(value, DictConfig):
        try:
            items = value.items_ex(resolve=False)
        except Exception:  # noqa: BLE001 - a missing or broken section: Hydra's to answer
            return {"error": True}
        node["c"] = {str(k): _node(config, f"{path}.{k}" if path else str(k), v) for k, v in items}
    elif isinstance(value, ListConfig):
        node["c"] = {
            str(i): _node(config, f"{path}[{i}]", value._get_node(i)) for i in range(len(value))
        }
    else:
        try:
            resolved = OmegaConf.select(config, path, throw_on_missing=True)
        except MissingMandatoryValue:
            resolved = ""
        except Exception:  # noqa: BLE001 - an interpolation Hydra cannot resolve here either
            return {"error": True}
        if isinstance(resolved, bool):
            resolved = str(resolved).lower()
        node["v"] = None if resolved is None else str(resolved)
    return node


def _composed(loader: Any, words: list[str]) -> dict[str, Any] | None:
    """The config the earlier ``words`` compose, as a tree; None when they do not compose."""
    from hydra.errors import ConfigCompositionException
    from hydra.types import RunMode

    try:
        config = loader.load_configuration("config", overrides=words, run_mode=RunMode.RUN)
    except ConfigCompositionException:
        return None
    return _node(config, "", config)


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _write(path: Path, index: dict[str, Any]) -> None:
    """Atomically; an unwritable cache only costs the next TAB the same work."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump(index, f)
        os.replace(tmp, path)
    except OSError:
        pass


def _material(words: list[str]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The groups and the composed config of ``words``: from the cache, else from Hydra."""
    path = index_path()
    index = _read(path)
    key = json.dumps(words)
    configs = index.get("configs", {})
    if "groups" in index and key in configs:
        return index["groups"], configs[key]
    loader = _loader()
    groups = index.get("groups") or _groups(loader)
    configs[key] = _composed(loader, words)
    while len(configs) > MAX_CONFIGS:
        configs.pop(next(iter(configs)))
    _write(path, {"groups": groups, "configs": configs})
    return groups, configs[key]


# ------------------------------------------------------------ Hydra's answer, from them
def _group_matches(word: str, groups: dict[str, dict[str, list[str]]]) -> tuple[list[str], bool]:
    """``CompletionPlugin._query_config_groups`` over the cached groups."""
    prefix = word[0] if word.startswith("+") else ""
    word = word[len(prefix) :]
    if "=" in word:
        parent = word[: word.rfind("=")]
        options = groups.get(parent, {}).get("options", [])
        names = [f"{parent}={o}" if parent else o for o in options]
        return [prefix + n for n in names if n.startswith(word)], bool(options)
    parent = word[: word.rfind("/")] if "/" in word else ""
    matches = []
    for group in groups.get(parent, {}).get("groups", []):
        name = f"{parent}/{group}" if parent else group
        if not name.startswith(word):
            continue
        entry = groups.get(name, {"options": [], "groups": []})
        if entry["options"] and not entry["groups"]:
            name += "="
        elif entry["groups"] and not entry["options"]:
            name += "/"
        matches.append(prefix + name)
    return matches, False


def _select(tree: dict[str, Any] | None, key: str) -> dict[str, Any] | None:
    for part in key.split(".") if key else []:
        if tree is None or "c" not in tree:
            return None
        tree = tree["c"].get(part)
    return tree


def _is_dict(node: dict[str, Any]) -> bool:
    return "c" in node


def _config_matches(tree: dict[str, Any] | None, word: str) -> list[str] | None:
    """``CompletionPlugin._get_matches``; None where a value could not be resolved."""
    if tree is None:
        return []
    if word.endswith((".", "=")):
        node = _select(tree, word[:-1])
        if node is None:
            return []
        if "error" in node:
            return None
        if _is_dict(node):
            return [f"{word}{m}" for m in _config_matches(node, "") or []]
        return [] if node["v"] is None else [f"{word}{node['v']}"]
    base, _, partial = word.rpartition(".")
    node = _select(tree, base) if base else tree
    if node is None or not _is_dict(node):
        return []
    matches = [
        f"{k}." if _is_dict(v) else f"{k}=" for k, v in node["c"].items() if k.startswith(partial)
    ]
    return [f"{base}.{m}" for m in matches] if base else matches


def answer(line: str) -> list[str] | None:
    """Hydra's completions of the command line ``line`` (``COMP_LINE``), or None where the
    line needs Hydra's own completion."""
    match = _APP_NAME.match(line)
    if match is None:
        return None
    rest = match.group(1)
    words = rest.split()
    if words[:1] in (["report"], ["export"]) and (len(words) > 1 or rest.endswith(" ")):
        return []  # their arguments are paths: the shell's own completion
    if words[:1] == ["run"] and (len(words) > 1 or rest.endswith(" ")):
        rest = rest.split("run", 1)[1]
        words = words[1:]
    if any(w.startswith(("-", "~", "hydra.searchpath")) for w in words):
        return None
    word = "" if not rest or rest.endswith(" ") or not words else words.pop()
    key_eq, _, value = word.rpartition("=")
    if key_eq and value.lower().startswith((".", "/", "\\")):
        return None  # a file name: Hydra lists the directory
    groups, tree = _material(words)
    matched, exact = _group_matches(word, groups)
    config = [] if exact else _config_matches(tree, word)
    if config is None:
        return None
    return sorted(set(matched + config))


# ------------------------------------------------------------------ the --help page
def _help_path(overrides: list[str]) -> Path:
    from modularity.infra.paths import user_cache_dir

    words = hashlib.sha256("\0".join(overrides).encode()).hexdigest()[:16]
    return user_cache_dir("completion", ENV_VAR) / f"help-{fingerprint()}-{words}.txt"


def cached_help(overrides: list[str]) -> str | None:
    """The ``--help`` page these overrides gave before, with the same configs and code (one
    composition costs more CPU than the rest of the command); None the first time."""
    try:
        return _help_path(overrides).read_text()
    except OSError:
        return None


def remember_help(overrides: list[str], page: str) -> None:
    """Keep the page for the next ``--help`` with the same overrides; atomically, and an
    unwritable cache only costs the next call the composition."""
    path = _help_path(overrides)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".txt")
        with os.fdopen(fd, "w") as f:
            f.write(page)
        os.replace(tmp, path)
    except OSError:
        pass


def serve(argv: list[str]) -> bool:
    """Answer ``-sc query=bash`` here (printing what Hydra would print); False when the
    command line is something else, or the line needs Hydra."""
    if argv not in (["-sc", "query=bash"], ["--shell-completion", "query=bash"]):
        return False
    found = answer(os.environ.get("COMP_LINE", ""))
    if found is None:
        return False
    print(" ".join(found))
    sys.stdout.flush()
    return True
