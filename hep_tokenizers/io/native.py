"""The project's own ROOT layout ("native" format, written by ``hep-tok generate``).

Layout (docs/internals.md section 2): one TTree :data:`NATIVE_TREE` with, per object type
``T`` in :data:`hep_tokenizers.schema.GROUP_NAMES`, a counter branch ``nT`` and jagged branches
``T_<feature>`` (plus truth extras ``T_truth_*``); the per-event branches ``met_pt``,
``met_phi``, ``met_sumet`` (float32), ``process_id`` (int32, -1 when unknown), ``weight``
(float32) and ``event_number`` (int64); and beside the tree a ``TObjString`` named
:data:`META_KEY` holding JSON metadata (format, version, process labels, generator settings).

Values a writer does not have (awkward option ``None``) are stored as NaN (floating fields) or
-1 (integer fields) and the field is listed in ``meta["masked_fields"]``; the reader turns those
sentinels back into ``None`` for the listed fields only, so no number is made up.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import uproot

from ..schema import DEFAULT_SCHEMA, GROUP_NAMES, Kind

NATIVE_TREE = "hep_events"
META_KEY = "hep_tokenizers_meta"
FORMAT_NAME = "hep_tokenizers"
FORMAT_VERSION = 1
EVENT_BRANCHES = ("met_pt", "met_phi", "met_sumet", "process_id", "weight", "event_number")
DEFAULT_CHUNK = 20_000

__all__ = [
    "NATIVE_TREE",
    "META_KEY",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "NativeFormatError",
    "write_native",
    "read_native",
    "read_native_meta",
    "is_native",
    "arrays_to_events",
]


class NativeFormatError(ValueError):
    """A file claims or is assumed to be in the native layout but is not valid."""


# --------------------------------------------------------------------------------------- writing


def _disk_dtype(otype_name: str, field: str, values: np.ndarray) -> np.dtype:
    """On-disk dtype of one field: float32 for continuous/tagger, int8 for small integers, bool flags."""
    if values.dtype == np.bool_:
        return np.dtype(np.bool_)
    kind = None
    try:
        feat = DEFAULT_SCHEMA[otype_name].feature(field)
        kind, transform = feat.kind, feat.transform
    except KeyError:
        transform = "none"
    if kind is Kind.CATEGORICAL:
        return np.dtype(np.int8)
    if kind is Kind.BINARY:
        return np.dtype(np.int8) if transform == "sign" else np.dtype(np.bool_)
    if kind in (Kind.CONTINUOUS, Kind.TAGGER):
        return np.dtype(np.float32)
    # extras (truth_*): keep integers small, floats single precision
    if np.issubdtype(values.dtype, np.integer):
        return np.dtype(np.int16) if values.size and np.abs(values).max() > 127 else np.dtype(np.int8)
    return np.dtype(np.float32)


def _column(arr: ak.Array, otype_name: str, field: str, masked: set[str]) -> tuple[np.ndarray, np.dtype]:
    """Flat numpy column of ``arr`` (no option type): None -> NaN / -1, recorded in ``masked``."""
    flat = ak.flatten(arr, axis=1) if arr.ndim > 1 else arr
    key = f"{otype_name}.{field}"
    if "?" in str(ak.type(flat)):
        has_none = bool(ak.any(ak.is_none(flat)))
        probe = ak.to_numpy(ak.drop_none(flat))
        if has_none:
            masked.add(key)
            if probe.dtype == np.bool_:
                probe = probe.astype(np.int8)
                flat = ak.values_astype(flat, np.int8)
        fill = np.nan if np.issubdtype(probe.dtype, np.floating) else -1
        flat = ak.fill_none(flat, fill)
    values = ak.to_numpy(flat)
    if values.dtype.kind not in "biuf":
        raise NativeFormatError(f"cannot write {key}: values of type {ak.type(flat)} are not numbers")
    dtype = _disk_dtype(otype_name, field, values)
    if key in masked and dtype == np.bool_:
        dtype = np.dtype(np.int8)  # a masked flag needs the -1 sentinel
    return values.astype(dtype, copy=False), dtype


def _process_ids(events: ak.Array, meta: dict[str, Any]) -> tuple[np.ndarray, dict[str, str]]:
    """Map ``events.process`` labels to integer ids (``meta['process_labels']`` if given)."""
    given = {str(k): str(v) for k, v in (meta.get("process_labels") or {}).items()}
    n = len(events)
    if "process_id" in events.fields:
        ids = ak.to_numpy(ak.fill_none(events["process_id"], -1)).astype(np.int32)
        return ids, given
    if "process" not in events.fields:
        return np.full(n, -1, dtype=np.int32), given
    proc = events["process"]
    # unique labels through numpy on the (small) string content
    values = np.asarray(ak.to_list(proc), dtype=object)
    present = values != None  # noqa: E711  (elementwise)
    uniq_labels = sorted(set(values[present].tolist()))
    label_to_id = {v: int(k) for k, v in given.items()}
    for lab in uniq_labels:
        if lab not in label_to_id:
            label_to_id[lab] = max(label_to_id.values(), default=-1) + 1
    ids = np.full(n, -1, dtype=np.int32)
    for lab in uniq_labels:
        ids[values == lab] = label_to_id[lab]
    return ids, {str(i): lab for lab, i in sorted(label_to_id.items(), key=lambda x: x[1])}


def _chunk_dict(events: ak.Array, masked: set[str], process_ids: np.ndarray) -> dict[str, Any]:
    """Branch dict for ``mktree``/``extend``: jagged record per group + flat event branches."""
    out: dict[str, Any] = {}
    n = len(events)
    for group in GROUP_NAMES:
        if group not in events.fields:
            raise NativeFormatError(f"cannot write native file: events have no field {group!r} (fields: {events.fields})")
        block = events[group]
        counts = ak.to_numpy(ak.num(block, axis=1)).astype(np.int64)
        cols = {}
        for field in block.fields:
            flat, _ = _column(block[field], group, field, masked)
            cols[field] = flat
        out[group] = ak.unflatten(ak.zip(cols), counts) if cols else ak.unflatten(ak.zip({"pt": np.zeros(0, np.float32)}), counts)
    if "met" not in events.fields:
        raise NativeFormatError(f"cannot write native file: events have no field 'met' (fields: {events.fields})")
    for field in ("pt", "phi", "sumet"):
        if field not in events["met"].fields:
            raise NativeFormatError(f"cannot write native file: events.met has no field {field!r}")
        flat, _ = _column(events["met"][field], "met", field, masked)
        out[f"met_{field}"] = flat.astype(np.float32)
    out["process_id"] = process_ids
    if "weight" in events.fields:
        out["weight"] = ak.to_numpy(ak.fill_none(events["weight"], 1.0)).astype(np.float32)
    else:
        out["weight"] = np.ones(n, dtype=np.float32)
    for name in ("event_number", "entry"):
        if name in events.fields:
            out["event_number"] = ak.to_numpy(events[name]).astype(np.int64)
            break
    else:
        out["event_number"] = np.arange(n, dtype=np.int64)
    return out


def write_native(
    path: str | os.PathLike,
    events: ak.Array,
    meta: dict[str, Any] | None = None,
    *,
    chunk_size: int = DEFAULT_CHUNK,
    compression: Any = None,
) -> None:
    """Write ``events`` (the event array of docs/internals.md section 1) in the native layout.

    ``meta`` is stored as JSON beside the tree, completed with ``format``, ``version``,
    ``n_events``, ``process_labels`` (id -> label, from ``events.process`` or given) and
    ``masked_fields``. The file is written under a temporary name in the same directory and
    moved into place with ``os.replace``: readers never see a half-written file, and an
    existing file at ``path`` is untouched if writing fails.
    """
    path = Path(path)
    meta = dict(meta or {})
    if not isinstance(events, ak.Array) or events.ndim != 1 or not events.fields:
        raise NativeFormatError(f"cannot write {path}: expected an awkward record array of events, got {type(events).__name__}")
    process_ids, labels = _process_ids(events, meta)
    masked: set[str] = set()
    compression = uproot.ZLIB(6) if compression is None else compression
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with uproot.recreate(tmp, compression=compression) as f:
            tree = None
            n = len(events)
            starts = range(0, max(n, 1), max(int(chunk_size), 1))
            for start in starts:
                stop = min(start + chunk_size, n)
                data = _chunk_dict(events[start:stop], masked, process_ids[start:stop])
                if tree is None:
                    tree = f.mktree(NATIVE_TREE, {k: v.type if isinstance(v, ak.Array) else v.dtype for k, v in data.items()},
                                    title="hep-tokenizers events")
                if stop > start:
                    tree.extend(data)
            full_meta = {
                "format": FORMAT_NAME,
                "version": FORMAT_VERSION,
                **meta,
                "process_labels": labels,
                "n_events": int(n),
                "masked_fields": sorted(masked),
            }
            f[META_KEY] = json.dumps(full_meta, sort_keys=True, default=str)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# --------------------------------------------------------------------------------------- reading


def _open(path: str | os.PathLike) -> uproot.ReadOnlyDirectory:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file")
    try:
        return uproot.open(p)
    except Exception as exc:  # uproot raises a variety of errors for non-ROOT input
        raise NativeFormatError(f"{p}: not a readable ROOT file ({type(exc).__name__}: {exc})") from exc


def is_native(file: uproot.ReadOnlyDirectory) -> bool:
    """True if an open ROOT file holds the native tree and its metadata string."""
    keys = {k.split(";")[0] for k in file.keys(recursive=False)}
    return NATIVE_TREE in keys and META_KEY in keys


def _meta_from_file(file: uproot.ReadOnlyDirectory, where: str) -> dict[str, Any]:
    keys = {k.split(";")[0] for k in file.keys(recursive=False)}
    if META_KEY not in keys:
        raise NativeFormatError(f"{where}: no {META_KEY!r} metadata string; not a hep_tokenizers native file")
    try:
        meta = json.loads(str(file[META_KEY]))
    except json.JSONDecodeError as exc:
        raise NativeFormatError(f"{where}: {META_KEY!r} is not valid JSON ({exc})") from exc
    if meta.get("format") != FORMAT_NAME:
        raise NativeFormatError(f"{where}: metadata format is {meta.get('format')!r}, expected {FORMAT_NAME!r}")
    if int(meta.get("version", -1)) > FORMAT_VERSION:
        raise NativeFormatError(
            f"{where}: native format version {meta.get('version')} is newer than this package supports ({FORMAT_VERSION})"
        )
    return meta


def read_native_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON metadata stored beside the tree (format, version, process labels, generator)."""
    with _open(path) as f:
        return _meta_from_file(f, str(path))


def _mask_sentinel(arr: ak.Array) -> ak.Array:
    """NaN (floats) or -1 (integers) -> None, keeping jaggedness."""
    flat = ak.flatten(arr, axis=None) if arr.ndim > 1 else arr
    np_flat = ak.to_numpy(flat)
    bad = np.isnan(np_flat) if np.issubdtype(np_flat.dtype, np.floating) else np_flat < 0
    if arr.ndim > 1:
        good = ak.unflatten(~bad, ak.num(arr, axis=1))
    else:
        good = ~bad
    return ak.mask(arr, good)


def arrays_to_events(arrays: ak.Array | dict[str, Any], meta: dict[str, Any], entry_start: int = 0) -> ak.Array:
    """Convert the raw branch arrays of a native tree (e.g. one ``uproot.iterate`` chunk) to events.

    ``arrays`` holds the native branches (``nT``, ``T_<feature>``, ``met_*``, ``process_id``,
    ``weight``, ``event_number``); ``entry_start`` is the entry number of the first row.
    """
    fields = list(arrays.fields if isinstance(arrays, ak.Array) else arrays.keys())
    missing = [b for b in (*EVENT_BRANCHES, *(f"n{g}" for g in GROUP_NAMES)) if b not in fields]
    if missing:
        raise NativeFormatError(f"native tree {NATIVE_TREE!r} lacks branches {missing}")
    masked = set(meta.get("masked_fields", ()))
    n = len(arrays["weight"])
    out: dict[str, ak.Array] = {}
    for group in GROUP_NAMES:
        prefix = f"{group}_"
        counts = ak.to_numpy(arrays[f"n{group}"]).astype(np.int64)
        cols = {}
        for name in fields:
            if not name.startswith(prefix):
                continue
            field = name[len(prefix):]
            flat = ak.flatten(arrays[name], axis=1)
            if f"{group}.{field}" in masked:
                flat = _mask_sentinel(flat)
            cols[field] = flat
        if not cols:
            raise NativeFormatError(f"native tree {NATIVE_TREE!r} has a counter n{group} but no {prefix}* branches")
        out[group] = ak.unflatten(ak.zip(cols), counts)
    met = {}
    for field in ("pt", "phi", "sumet"):
        col = arrays[f"met_{field}"]
        met[field] = _mask_sentinel(col) if f"met.{field}" in masked else col
    out["met"] = ak.zip(met)
    labels = {int(k): v for k, v in (meta.get("process_labels") or {}).items()}
    pid = ak.to_numpy(arrays["process_id"]).astype(np.int64)
    if labels:
        table = [labels.get(i, None) for i in range(max(labels) + 1)]
        unknown = np.unique(pid[(pid >= len(table)) | (pid < -1)])
        if unknown.size:
            raise NativeFormatError(f"process_id values {unknown.tolist()} have no label in the metadata")
        lab = ak.Array(table)[np.clip(pid, 0, None)]
        out["process"] = ak.mask(lab, pid >= 0)
    else:
        out["process"] = ak.mask(ak.Array([""] * n), np.zeros(n, dtype=bool))
    out["weight"] = ak.Array(ak.to_numpy(arrays["weight"]).astype(np.float64))
    out["entry"] = ak.Array(np.arange(entry_start, entry_start + n, dtype=np.int64))
    out["event_number"] = ak.Array(ak.to_numpy(arrays["event_number"]).astype(np.int64))
    return ak.zip(out, depth_limit=1)


def read_native(
    path_or_tree: str | os.PathLike | Any,
    entry_start: int | None = None,
    entry_stop: int | None = None,
) -> ak.Array:
    """Read a native file (or an already-open ``hep_events`` uproot TTree) into an event array.

    Returns the array of docs/internals.md section 1: ``electrons`` .. ``jets`` (pT-descending,
    with truth extras), ``met``, ``process`` (label from the metadata), ``weight`` (float64),
    ``entry`` (entry number in the file) and ``event_number``.
    """
    if isinstance(path_or_tree, (str, os.PathLike)):
        where = str(path_or_tree)
        with _open(path_or_tree) as f:
            meta = _meta_from_file(f, where)
            if NATIVE_TREE not in {k.split(";")[0] for k in f.keys(recursive=False)}:
                raise NativeFormatError(f"{where}: no tree {NATIVE_TREE!r}")
            return _read_tree(f[NATIVE_TREE], meta, entry_start, entry_stop, where)
    tree = path_or_tree
    where = getattr(tree.file, "file_path", "<tree>")
    with uproot.open(where) as f:
        meta = _meta_from_file(f, where)
    return _read_tree(tree, meta, entry_start, entry_stop, where)


def _read_tree(tree: Any, meta: dict[str, Any], entry_start: int | None, entry_stop: int | None, where: str) -> ak.Array:
    n_total = tree.num_entries
    start = 0 if entry_start is None else int(entry_start)
    stop = n_total if entry_stop is None else int(entry_stop)
    if start < 0:
        start = max(n_total + start, 0)
    if stop < 0:
        stop = max(n_total + stop, 0)
    start, stop = min(start, n_total), min(max(stop, start), n_total)
    try:
        arrays = tree.arrays(entry_start=start, entry_stop=stop, library="ak")
        return arrays_to_events(arrays, meta, entry_start=start)
    except NativeFormatError as exc:
        raise NativeFormatError(f"{where}: {exc}") from exc
