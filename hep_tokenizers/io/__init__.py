"""Readers: ROOT files of several formats -> the event arrays of ``docs/internals.md`` section 1.

>>> events = read_events("file.root")                 # format detected
>>> events, stats = read_events("f.root", format="nanoaod", return_stats=True)
>>> for chunk in iter_events(["a.root", "b.root"], step_size=10000): ...

Formats: ``hep_tokenizers`` (native), ``physlite``, ``nanoaod``, ``atlas_opendata``,
``delphes``, and any tree through ``mapping="my_mapping.yaml"``. ``docs/formats.md`` lists
which branch feeds each feature and the bad-input policy (:class:`ReadError`, :class:`ReadStats`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import awkward as ak
import numpy as np

from .base import Plan, Raw, short_keys
from .common import ReadError, ReadStats, log
from .detect import FORMATS, NATIVE, NATIVE_TREE, READERS, detect, get_tree, open_root

PathLike = str | os.PathLike

__all__ = ["read_events", "iter_events", "open_events", "ReadError", "ReadStats", "FORMATS", "EventSource"]


class EventSource:
    """One opened file, its detected format and tree, and the read plan (branches to read).

    Made by :func:`open_events`; used by :func:`read_events`, :func:`iter_events` and
    ``hep-tok inspect``. ``stats`` accumulates over every read through this source.
    """

    def __init__(
        self,
        path: PathLike,
        format: str | None = None,
        mapping: str | Path | Mapping[str, Any] | None = None,
        tree: str | None = None,
        max_objects: int | None = None,
    ):
        self.path = str(path)
        self.file = open_root(path)
        self.max_objects = max_objects
        self.stats = ReadStats()
        self._meta: dict[str, Any] | None = None
        if mapping is not None or format == "mapping":
            if mapping is None:
                raise ReadError("format='mapping' needs mapping='file.yaml' (or .json)")
            from .mapping import MappingReader

            reader = MappingReader(mapping)
            tree_name = tree or reader.mapping["tree"]
            get_tree(self.file, tree_name)
            self.format, self.tree_name = "mapping", tree_name
        else:
            self.format, self.tree_name = detect(self.file, format, tree)
            reader = READERS.get(self.format)
        self.tree = get_tree(self.file, self.tree_name)
        self.num_entries = int(self.tree.num_entries)
        self.plan: Plan | None = None
        if reader is not None:
            self.plan = reader.plan(self.path, self.tree_name, short_keys(self.tree), self.stats)
            if not self.plan.branches:
                raise ReadError(f"{self.path}: tree {self.tree_name!r} has none of the {self.format} branches")

    # ------------------------------------------------------------------ helpers
    @property
    def branches(self) -> list[str]:
        """Exactly the branches this source reads (``filter_name`` list)."""
        if self.plan is None:
            return sorted(short_keys(self.tree))
        return list(self.plan.branches)

    def _native_meta(self) -> dict[str, Any]:
        if self._meta is None:
            from .native import read_native_meta

            try:
                self._meta = read_native_meta(self.path)
            except ValueError as exc:
                raise ReadError(str(exc)) from exc
        return self._meta

    def _range(self, entry_start: int | None, entry_stop: int | None) -> tuple[int, int]:
        n = self.num_entries
        start = 0 if entry_start is None else int(entry_start)
        stop = n if entry_stop is None else int(entry_stop)
        start = max(n + start, 0) if start < 0 else min(start, n)
        stop = max(n + stop, 0) if stop < 0 else min(stop, n)
        return start, max(stop, start)

    def _convert(self, arrays: ak.Array, start: int) -> ak.Array:
        stop = start + len(arrays)
        try:
            if self.plan is None:
                from .native import arrays_to_events

                events = arrays_to_events(arrays, self._native_meta(), entry_start=start)
                self.stats.n_events += len(events)
                return events
            chunk_stats = ReadStats()
            events = self.plan.build(Raw(arrays), np.arange(start, stop, dtype=np.int64), chunk_stats, self.max_objects)
        except ReadError as exc:
            if self.path in str(exc):
                raise
            # a builder error names the field; add the file, tree and entries
            raise ReadError(f"{self.path}: tree {self.tree_name!r}, entries {start}-{stop}: {exc}") from exc
        except Exception as exc:  # noqa: BLE001 - name the file and entries, keep the cause
            raise ReadError(
                f"{self.path}: tree {self.tree_name!r}, entries {start}-{stop}: cannot convert to events: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        self._report(chunk_stats)
        self.stats.merge(chunk_stats)
        return events

    def _report(self, st: ReadStats) -> None:
        if st.removed or st.masked:
            log.info("%s: %s", self.path, st.summary())

    def _fail(self, exc: Exception, start: int, stop: int) -> ReadError:
        return ReadError(
            f"{self.path}: tree {self.tree_name!r}, entries {start}-{stop}: cannot read branches "
            f"(truncated or corrupt file?): {type(exc).__name__}: {exc}"
        )

    # -------------------------------------------------------------------- reads
    def read(self, entry_start: int | None = None, entry_stop: int | None = None) -> ak.Array:
        """All events in ``[entry_start, entry_stop)`` as one array."""
        start, stop = self._range(entry_start, entry_stop)
        try:
            if self.plan is None:
                arrays = self.tree.arrays(entry_start=start, entry_stop=stop, library="ak")
            else:
                arrays = self.tree.arrays(filter_name=self.plan.branches, entry_start=start, entry_stop=stop, library="ak")
        except Exception as exc:  # noqa: BLE001
            raise self._fail(exc, start, stop) from exc
        return self._convert(arrays, start)

    def iterate(
        self, step_size: int | str = 10000, entry_start: int | None = None, entry_stop: int | None = None
    ) -> Iterator[ak.Array]:
        """Chunks of about ``step_size`` events (or a size string like ``"100 MB"``), streamed."""
        start, stop = self._range(entry_start, entry_stop)
        kwargs: dict[str, Any] = dict(step_size=step_size, entry_start=start, entry_stop=stop, library="ak", report=True)
        if self.plan is not None:
            kwargs["filter_name"] = self.plan.branches
        it = self.tree.iterate(**kwargs)
        pos = start
        while True:
            try:
                arrays, report = next(it)
            except StopIteration:
                return
            except Exception as exc:  # noqa: BLE001
                raise self._fail(exc, pos, stop) from exc
            pos = int(report.tree_entry_start)
            yield self._convert(arrays, pos)
            pos = int(report.tree_entry_stop)

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> "EventSource":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def open_events(
    path: PathLike,
    format: str | None = None,
    mapping: str | Path | Mapping[str, Any] | None = None,
    tree: str | None = None,
    max_objects: int | None = None,
) -> EventSource:
    """Open a file, detect its format and tree, and plan the branches to read."""
    return EventSource(path, format=format, mapping=mapping, tree=tree, max_objects=max_objects)


def read_events(
    path: PathLike,
    format: str | None = None,
    mapping: str | Path | Mapping[str, Any] | None = None,
    tree: str | None = None,
    entry_start: int | None = None,
    entry_stop: int | None = None,
    *,
    max_objects: int | None = None,
    return_stats: bool = False,
) -> ak.Array | tuple[ak.Array, ReadStats]:
    """Read events from one ROOT file into the event array of docs/internals.md section 1.

    ``format``: one of :data:`FORMATS` (detected when None); ``mapping``: a YAML/JSON mapping
    file (or dict) for other layouts; ``tree``: force a tree name; ``max_objects``: optional cap
    per object type and event (lowest-pT objects beyond it are removed and counted). With
    ``return_stats=True`` returns ``(events, ReadStats)`` with every removal and mask counted.
    Raises :class:`ReadError` (naming file, tree, branch or entries) on bad input.
    """
    with open_events(path, format=format, mapping=mapping, tree=tree, max_objects=max_objects) as src:
        events = src.read(entry_start, entry_stop)
        stats = src.stats
    if stats.removed or stats.masked:
        log.warning("%s: %s", path, stats.summary())
    return (events, stats) if return_stats else events


def iter_events(
    paths: PathLike | Iterable[PathLike],
    step_size: int | str = 10000,
    format: str | None = None,
    mapping: str | Path | Mapping[str, Any] | None = None,
    *,
    tree: str | None = None,
    max_objects: int | None = None,
    stats: ReadStats | None = None,
    progress: bool = False,
) -> Iterator[ak.Array]:
    """Stream events from one or more files in chunks of about ``step_size`` events.

    Memory stays flat in file size: only one chunk of the needed branches is held at a time.
    Pass a :class:`ReadStats` as ``stats`` to collect the counts of every file; ``progress``
    shows a tqdm bar over events.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = list(paths)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=None, unit="ev", desc="reading")
    try:
        for path in paths:
            with open_events(path, format=format, mapping=mapping, tree=tree, max_objects=max_objects) as src:
                if bar is not None:
                    bar.total = (bar.total or 0) + src.num_entries
                    bar.refresh()
                for chunk in src.iterate(step_size):
                    if bar is not None:
                        bar.update(len(chunk))
                    yield chunk
                if stats is not None:
                    stats.merge(src.stats)
                if src.stats.removed or src.stats.masked:
                    log.warning("%s: %s", path, src.stats.summary())
    finally:
        if bar is not None:
            bar.close()
