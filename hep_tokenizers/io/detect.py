"""Open ROOT files with clear errors and find which format (and tree) they hold."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import uproot

from .base import FormatReader, short_keys
from .common import ReadError
from .delphes import DelphesReader
from .nanoaod import NanoaodReader
from .opendata import OpendataReader
from .physlite import PhysliteReader

NATIVE = "hep_tokenizers"
NATIVE_TREE = "hep_events"

#: Readers tried by auto-detection, in order.
READERS: dict[str, FormatReader] = {
    r.name: r for r in (PhysliteReader(), NanoaodReader(), OpendataReader(), DelphesReader())
}
FORMATS: tuple[str, ...] = (NATIVE, *READERS, "mapping")


def open_root(path: str | Path) -> Any:
    """``uproot.open`` with a :class:`ReadError` naming the file for the usual failures."""
    p = Path(path)
    if not p.exists():
        raise ReadError(f"{p}: no such file")
    if p.is_dir():
        raise ReadError(f"{p}: is a directory, not a ROOT file")
    if p.stat().st_size == 0:
        raise ReadError(f"{p}: empty file (0 bytes), not a ROOT file")
    try:
        return uproot.open(p)
    except Exception as exc:  # noqa: BLE001 - uproot raises many types for corrupt input
        with open(p, "rb") as fh:
            magic = fh.read(4)
        if magic != b"root":
            raise ReadError(f"{p}: not a ROOT file (starts with {magic!r})") from exc
        raise ReadError(f"{p}: cannot open ROOT file (truncated or corrupt?): {type(exc).__name__}: {exc}") from exc


def _trees(file: Any) -> dict[str, str]:
    """Name -> class name of every TTree / RNTuple at the top level (latest cycle only)."""
    out: dict[str, str] = {}
    try:
        classes = file.classnames(recursive=False)
    except Exception as exc:  # noqa: BLE001
        raise ReadError(f"{file.file_path}: cannot list the file's keys (truncated or corrupt?): {exc}") from exc
    for key, cls in classes.items():
        name = key.split(";")[0]
        if cls in ("TTree", "TNtuple", "ROOT::RNTuple", "ROOT::Experimental::RNTuple") and name not in out:
            out[name] = cls
    return out


def get_tree(file: Any, name: str) -> Any:
    """``file[name]`` with a :class:`ReadError` naming the file and tree on failure."""
    try:
        return file[name]
    except Exception as exc:  # noqa: BLE001
        raise ReadError(f"{file.file_path}: cannot read tree {name!r}: {type(exc).__name__}: {exc}") from exc


def detect(file: Any, format: str | None = None, tree: str | None = None) -> tuple[str, str]:
    """``(format, tree_name)`` of an open file; ``format``/``tree`` restrict the search.

    Raises :class:`ReadError` listing the trees found when nothing matches.
    """
    path = file.file_path
    trees = _trees(file)
    if format is not None and format not in FORMATS:
        raise ReadError(f"unknown format {format!r}; known: {list(FORMATS)}")
    candidates = [tree] if tree is not None else list(trees)
    if tree is not None and tree not in trees:
        raise ReadError(f"{path}: no tree {tree!r}; trees: {sorted(trees)}")
    if format in (None, NATIVE) and NATIVE_TREE in candidates:
        return NATIVE, NATIVE_TREE
    if format == NATIVE:
        raise ReadError(f"{path}: no {NATIVE_TREE!r} tree of the native format; trees: {sorted(trees)}")
    readers = [READERS[format]] if format in READERS else list(READERS.values())
    # prefer each reader's own tree names, then any other tree
    ordered = sorted(candidates, key=lambda t: (not any(t in r.tree_names for r in readers), t))
    seen: list[str] = []
    for name in ordered:
        if name.startswith("##") or name.startswith("MetaData"):
            continue
        keys = short_keys(get_tree(file, name))
        seen.append(f"{name} ({len(keys)} branches)")
        for r in readers:
            if r.matches(name, keys):
                return r.name, name
    what = f"format {format!r}" if format else "any known format"
    raise ReadError(
        f"{path}: no tree matches {what}; trees examined: {seen or sorted(trees)}. "
        f"Known formats: {list(FORMATS)}; for other layouts pass mapping='my_mapping.yaml'"
    )
