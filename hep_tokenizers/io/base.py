"""The reader interface every format implements, and branch-name resolution.

A :class:`FormatReader` knows which trees it reads and, for an opened tree, makes a
:class:`Plan`: the exact branches to read (so only those are decompressed) and a ``build``
function turning one chunk of raw branches into the event array.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

import awkward as ak
import numpy as np

from .common import ReadError, ReadStats, warn_missing


class Branches:
    """Resolve wanted branch names against the branches of one tree.

    ``keys`` are the tree's branch names (for Delphes-style split branches both the full
    ``parent/child`` path and the last segment are accepted). Each resolved name is added to
    :attr:`wanted`. Missing optional features are recorded in ``stats`` and logged.
    """

    def __init__(self, keys: Iterable[str], path: str, stats: ReadStats):
        self.full: dict[str, str] = {}
        for k in keys:
            self.full.setdefault(k, k)
            self.full.setdefault(k.rsplit("/", 1)[-1], k)
        self.path = path
        self.stats = stats
        self.wanted: list[str] = []

    def __contains__(self, name: str) -> bool:
        return name in self.full

    def first(self, *candidates: str) -> str | None:
        """The first candidate present in the tree (added to the read list), else None."""
        for c in candidates:
            if c in self.full:
                if c not in self.wanted:
                    self.wanted.append(c)
                return c
        return None

    def feature(self, otype: str, feature: str, *candidates: str) -> str | None:
        """Like :meth:`first`, but records and logs a missing feature when none is present."""
        name = self.first(*candidates)
        if name is None and candidates:
            warn_missing(self.stats, self.path, otype, feature, " or ".join(candidates))
        return name

    def require(self, what: str, *candidates: str) -> str:
        """Like :meth:`first`, but a missing branch is a :class:`ReadError`."""
        name = self.first(*candidates)
        if name is None:
            raise ReadError(f"{self.path}: required branch {' or '.join(candidates)} ({what}) not found")
        return name

    def filter_names(self) -> list[str]:
        """Names to give uproot's ``filter_name`` (the last path segment of each branch)."""
        return sorted({self.full[w].rsplit("/", 1)[-1] for w in self.wanted})


class Raw:
    """One chunk of raw branches, addressed by the names :class:`Branches` resolved."""

    def __init__(self, arrays: ak.Array):
        self.arrays = arrays
        self._by_short = {f.rsplit("/", 1)[-1]: f for f in arrays.fields}

    def __len__(self) -> int:
        return len(self.arrays)

    def __getitem__(self, name: str) -> ak.Array:
        if name in self.arrays.fields:
            return self.arrays[name]
        short = name.rsplit("/", 1)[-1]
        if short in self._by_short:
            return self.arrays[self._by_short[short]]
        raise KeyError(name)

    def get(self, name: str | None) -> ak.Array | None:
        return None if name is None else self[name]


@dataclass
class Plan:
    """Branches to read from one tree and how to turn a chunk of them into events."""

    format: str
    tree: str
    branches: list[str]
    build: Callable[[Raw, np.ndarray, ReadStats, int | None], ak.Array]
    stats: ReadStats


class FormatReader:
    """Base class of the per-format readers."""

    name: str = ""
    tree_names: tuple[str, ...] = ()
    description: str = ""

    def matches(self, tree_name: str, keys: set[str]) -> bool:  # pragma: no cover - interface
        raise NotImplementedError

    def plan(self, path: str, tree_name: str, keys: set[str], stats: ReadStats) -> Plan:  # pragma: no cover
        raise NotImplementedError


def short_keys(tree: Any) -> set[str]:
    """All branch (or RNTuple field) names of a tree, full paths and last segments."""
    try:
        keys = list(tree.keys(recursive=True))
    except TypeError:  # RNTuple.keys has no 'recursive'
        keys = list(tree.keys())
    out = set(keys)
    out.update(k.rsplit("/", 1)[-1] for k in keys)
    return out
