"""``hep-tok tokenize``: ROOT files -> a HuggingFace ``datasets`` dataset of token sequences on disk.

::

    hep-tok tokenize --tokenizer TOK_DIR --out DS_DIR [--step_size 10000] [--num_workers K] f1.root f2.root ...
    accelerate launch -m hep_tokenizers.tokenize_files --tokenizer TOK_DIR --out DS_DIR f*.root  # ranks split the shards

Output (``DS_DIR``), loadable with ``datasets.load_from_disk(DS_DIR)`` (or
``load_dataset("arrow", data_files=f"{DS_DIR}/data-*.arrow")``):

``data-f<file>-c<chunk>.arrow``  one Arrow shard per input chunk (``--step_size`` entries of one file),
                                 written under a temporary name then ``os.replace``-d into place
``state.json``, ``dataset_info.json``  the ``save_to_disk`` index, written when every shard exists
``summary.json``                 counts: events read, tokenized, truncated, rejected (with reasons),
                                 reader statistics, token-length distribution, shards written/skipped
``_plan.json``                   the files, entry ranges and settings of the run (resume checks them)
``_progress/*.json``             per-shard counts (a shard is finished when its ``.arrow`` exists)

Columns (unpadded, one row per event; padding belongs to the collator): ``input_ids`` (int32),
``attention_mask``, ``token_type_ids``, ``level_ids`` (int8; -1 for special tokens),
``n_truncated_objects`` (int32), ``source_file`` (string), ``entry`` (int64, entry in the file),
``process`` (string or null), ``weight`` (float64, 1 when the file has none).

Resuming: rerunning the same command skips shards whose ``.arrow`` file exists and re-does the
others, so no event is duplicated or lost; a run with different files or settings in the same
``DS_DIR`` is refused unless ``--overwrite`` (files that were bad in the earlier run may have been
fixed in between). Memory stays flat: each worker holds one chunk.

Bad input: a file that cannot be opened as events gets no shard and is listed in ``summary.json``
(``bad_files``, with the reader's error naming the file); a shard whose entries cannot be read or
tokenized is listed in ``failed_shards`` (file, entry range, error; ``_progress/<shard>.failed.json``)
and retried by the next run. The other files are finished, the index covers the finished shards,
and the command exits with status 3 (:data:`EXIT_BAD_INPUT`). Events with values that cannot be
tokenized (infinite, or absurdly far from the training range) are dropped and counted per reason
in ``rejected_reasons``. See ``docs/guarantees.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

logger = logging.getLogger(__name__)

PLAN_FILE = "_plan.json"
PROGRESS_DIR = "_progress"
SUMMARY_FILE = "summary.json"
SHARD_PATTERN = "data-f{file:05d}-c{chunk:06d}.arrow"
PLAN_VERSION = 1
DEFAULT_STEP = 10_000
#: exit status when the run finished but some input files or shards could not be read
EXIT_BAD_INPUT = 3


# --------------------------------------------------------------------------- planning
def count_entries(path: str | os.PathLike, format: str | None = None, tree: str | None = None, mapping: str | None = None) -> int:
    """Number of entries of the event tree of ``path`` (format detected as ``read_events`` does)."""
    from .io import open_events

    with open_events(path, format=format, mapping=mapping, tree=tree) as src:
        return int(src.num_entries)


def _tokenizer_fingerprint(tok_dir: Path) -> str:
    h = hashlib.sha256()
    for name in ("event_tokenizer.json", "rvq_config.json"):
        p = tok_dir / name
        h.update(p.read_bytes() if p.is_file() else b"")
    return h.hexdigest()


def make_plan(
    files: list[Path],
    tok_dir: Path,
    step_size: int,
    max_length: int | None,
    format: str | None,
    tree: str | None,
    mapping: str | None,
) -> dict[str, Any]:
    """Files, entry counts and settings; chunks are ``[k*step, min((k+1)*step, n))`` per file.

    A file that cannot be opened as events (not ROOT, truncated, no known tree, ...) is kept in
    the plan with ``n_entries`` 0 and its ``error``: it gets no shard and is reported as bad.
    """
    entries = []
    for p in files:
        try:
            n = count_entries(p, format=format, tree=tree, mapping=mapping)
        except Exception as exc:  # noqa: BLE001 - every reader failure is reported per file
            logger.error("bad input file %s: %s", p, exc)
            entries.append({"path": str(p), "size": p.stat().st_size, "n_entries": 0, "error": f"{type(exc).__name__}: {exc}"})
            continue
        entries.append({"path": str(p), "size": p.stat().st_size, "n_entries": n})
    return {
        "plan_version": PLAN_VERSION,
        "files": entries,
        "step_size": step_size,
        "max_length": max_length,
        "format": format,
        "tree": tree,
        "mapping": str(mapping) if mapping else None,
        "tokenizer": str(tok_dir),
        "tokenizer_sha256": _tokenizer_fingerprint(tok_dir),
    }


def plan_chunks(plan: dict[str, Any]) -> list[tuple[int, int, int, int]]:
    """``(file_index, chunk_index, entry_start, entry_stop)`` of every shard, in dataset order."""
    out = []
    step = int(plan["step_size"])
    for fi, f in enumerate(plan["files"]):
        n = int(f["n_entries"])
        for ci, start in enumerate(range(0, n, step)):
            out.append((fi, ci, start, min(start + step, n)))
    return out


def shard_name(file_index: int, chunk_index: int) -> str:
    return SHARD_PATTERN.format(file=file_index, chunk=chunk_index)


def _plans_compatible(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Same run, except that files which were bad before may have been fixed (or still be bad)."""
    if {k: v for k, v in old.items() if k != "files"} != {k: v for k, v in new.items() if k != "files"}:
        return False
    if len(old["files"]) != len(new["files"]):
        return False
    for a, b in zip(old["files"], new["files"]):
        if a["path"] != b["path"]:
            return False
        if a != b and "error" not in a:
            return False
    return True


def _failed_path(out: Path, name: str) -> Path:
    return out / PROGRESS_DIR / (name + ".failed.json")


# --------------------------------------------------------------------------- arrow output
def _features():
    import datasets

    i8, i32 = datasets.Value("int8"), datasets.Value("int32")
    return datasets.Features(
        {
            "input_ids": datasets.List(i32),
            "attention_mask": datasets.List(i8),
            "token_type_ids": datasets.List(i8),
            "level_ids": datasets.List(i8),
            "n_truncated_objects": i32,
            "source_file": datasets.Value("string"),
            "entry": datasets.Value("int64"),
            "process": datasets.Value("string"),
            "weight": datasets.Value("float64"),
        }
    )


def _write_atomic_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _write_json(path: Path, obj: Any) -> None:
    _write_atomic_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def _batch_table(batch: Any, source_file: str, entry: np.ndarray, process: list | None, weight: np.ndarray, schema: Any) -> Any:
    import pyarrow as pa

    offsets = pa.array(batch.offsets.astype(np.int32))

    def lst(values: np.ndarray, dtype: Any) -> Any:
        return pa.ListArray.from_arrays(offsets, pa.array(values.astype(dtype)))

    n = len(batch)
    cols = {
        "input_ids": lst(batch.input_ids, np.int32),
        "attention_mask": lst(np.ones(len(batch.input_ids), dtype=np.int8), np.int8),
        "token_type_ids": lst(batch.token_type_ids, np.int8),
        "level_ids": lst(batch.level_ids, np.int8),
        "n_truncated_objects": pa.array(batch.n_truncated_objects.astype(np.int32)),
        "source_file": pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, dtype=np.int32)), pa.array([source_file])).cast(pa.string())
        if n
        else pa.array([], pa.string()),
        "entry": pa.array(entry.astype(np.int64)),
        "process": pa.array(process if process is not None else [None] * n, pa.string()),
        "weight": pa.array(weight.astype(np.float64)),
    }
    return pa.Table.from_arrays([cols[f.name] for f in schema], schema=schema)


def _write_arrow(path: Path, table: Any) -> None:
    import pyarrow as pa

    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=10_000)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- worker
_WORKER: dict[str, Any] = {}


def _init_worker(tok_dir: str, threads: int | None) -> None:
    if threads:
        try:
            import torch

            torch.set_num_threads(threads)
        except ImportError:  # pragma: no cover
            pass
    from .tokenization_event import EventTokenizer

    _WORKER["tok"] = EventTokenizer.from_pretrained(tok_dir)
    _WORKER["schema"] = _features().arrow_schema


def _invalid_events(tok: Any, events: Any) -> dict[str, np.ndarray]:
    """Per reason, a mask of events that cannot be tokenized (see ``EventTokenizer.invalid_events``)."""
    return tok.invalid_events(events)


def _read_chunk(path: str, start: int, stop: int, plan: dict[str, Any]) -> tuple[Any, dict[str, Any] | None]:
    from .io import read_events

    kwargs: dict[str, Any] = {"entry_start": start, "entry_stop": stop}
    for key in ("format", "tree", "mapping"):
        if plan.get(key) is not None:
            kwargs[key] = plan[key]
    events, stats = read_events(path, return_stats=True, **kwargs)
    return events, stats.to_dict()


def process_chunk(task: tuple[int, int, int, int], plan: dict[str, Any], out_dir: str) -> dict[str, Any]:
    """Read, validate, tokenize and write one shard; returns its counts (also saved in ``_progress``)."""
    import awkward as ak

    tok = _WORKER["tok"]
    fi, ci, start, stop = task
    path = plan["files"][fi]["path"]
    t0 = time.perf_counter()
    events, reader_stats = _read_chunk(path, start, stop, plan)
    n_read = len(events)
    reasons = _invalid_events(tok, events)
    bad = np.zeros(n_read, dtype=bool)
    for m in reasons.values():
        bad |= m
    if bad.any():
        events = events[~bad]
    entry = ak.to_numpy(events["entry"]).astype(np.int64) if "entry" in events.fields else np.arange(start, stop)[~bad]
    weight = (
        ak.to_numpy(ak.fill_none(events["weight"], 1.0)).astype(np.float64) if "weight" in events.fields else np.ones(len(events))
    )
    process = ak.to_list(events["process"]) if "process" in events.fields else None
    batch = tok.encode_events(events, max_length=plan["max_length"])
    table = _batch_table(batch, path, entry, process, weight, _WORKER["schema"])
    out = Path(out_dir)
    lengths = batch.lengths
    stats = {
        "shard": shard_name(fi, ci),
        "file_index": fi,
        "chunk_index": ci,
        "source_file": path,
        "entry_start": start,
        "entry_stop": stop,
        "events_read": n_read,
        "events_tokenized": len(batch),
        "events_truncated": int((batch.n_truncated_objects > 0).sum()),
        "objects": int(batch.n_objects.sum()),
        "objects_truncated": int(batch.n_truncated_objects.sum()),
        "events_rejected": int(bad.sum()),
        "rejected_reasons": {k: int(v.sum()) for k, v in reasons.items()},
        "tokens": int(lengths.sum()),
        "length_histogram": np.bincount(lengths).tolist() if len(lengths) else [],
        "reader_stats": reader_stats,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    # progress record first, then the shard: a shard file on disk always has its record
    _write_json(out / PROGRESS_DIR / (stats["shard"] + ".json"), stats)
    _write_arrow(out / stats["shard"], table)
    _failed_path(out, stats["shard"]).unlink(missing_ok=True)
    return stats


def _record_failure(out: Path, task: tuple[int, int, int, int], plan: dict[str, Any], exc: BaseException) -> dict[str, Any]:
    """Write (and return) the record of a shard that could not be read or tokenized."""
    fi, ci, start, stop = task
    rec = {
        "shard": shard_name(fi, ci),
        "source_file": plan["files"][fi]["path"],
        "entry_start": start,
        "entry_stop": stop,
        "error": f"{type(exc).__name__}: {exc}",
    }
    logger.error("shard %s (%s entries %d-%d) failed: %s", rec["shard"], rec["source_file"], start, stop, rec["error"])
    _write_json(_failed_path(out, rec["shard"]), rec)
    return rec


def _process_in_worker(task: tuple[int, int, int, int], plan: dict[str, Any], out_dir: str) -> dict[str, Any]:
    return process_chunk(task, plan, out_dir)


# --------------------------------------------------------------------------- summary / index
def _merge_reader_stats(items: Iterable[dict[str, Any] | None]) -> dict[str, Any] | None:
    merged: dict[str, Any] | None = None
    for s in items:
        if not s:
            continue
        if merged is None:
            merged = {"n_events": 0, "n_empty_events": 0, "removed": {}, "masked": {}, "missing": {}, "notes": []}
        merged["n_events"] += int(s.get("n_events", 0))
        merged["n_empty_events"] += int(s.get("n_empty_events", 0))
        for key in ("removed", "masked"):
            for k, v in (s.get(key) or {}).items():
                merged[key][k] = merged[key].get(k, 0) + int(v)
        merged["missing"].update(s.get("missing") or {})
        for note in s.get("notes") or []:
            if note not in merged["notes"]:
                merged["notes"].append(note)
    return merged


def _percentile_from_hist(hist: np.ndarray, q: float) -> int:
    if hist.sum() == 0:
        return 0
    c = np.cumsum(hist)
    return int(np.searchsorted(c, q * c[-1], side="left"))


def summarize(out: Path, plan: dict[str, Any], chunks: list[tuple[int, int, int, int]], run: dict[str, Any]) -> dict[str, Any]:
    """Aggregate the per-shard records of every finished shard into ``summary.json``."""
    records = []
    failed = []
    for fi, ci, _, _ in chunks:
        name = shard_name(fi, ci)
        rec_path = out / PROGRESS_DIR / (name + ".json")
        if (out / name).is_file() and rec_path.is_file():
            records.append(json.loads(rec_path.read_text()))
        elif _failed_path(out, name).is_file():
            failed.append(json.loads(_failed_path(out, name).read_text()))
    bad_files = [{"path": f["path"], "error": f["error"]} for f in plan["files"] if "error" in f]
    hist = np.zeros(1, dtype=np.int64)
    reasons: dict[str, int] = {}
    for r in records:
        h = np.asarray(r["length_histogram"], dtype=np.int64)
        if len(h) > len(hist):
            hist = np.pad(hist, (0, len(h) - len(hist)))
        hist[: len(h)] += h
        for k, v in r["rejected_reasons"].items():
            reasons[k] = reasons.get(k, 0) + int(v)
    total = lambda key: int(sum(r[key] for r in records))  # noqa: E731
    per_file: dict[str, dict[str, int]] = {}
    for r in records:
        d = per_file.setdefault(r["source_file"], {"events_read": 0, "events_tokenized": 0, "events_rejected": 0})
        for k in d:
            d[k] += int(r[k])
    nz = np.nonzero(hist)[0]
    summary = {
        "dataset": str(out),
        "load_with": f"datasets.load_from_disk({str(out)!r})",
        "complete": len(records) == len(chunks) and not bad_files,
        "ok": not bad_files and not failed,
        "n_files": len(plan["files"]),
        "n_bad_files": len(bad_files),
        "bad_files": bad_files,
        "n_failed_shards": len(failed),
        "failed_shards": failed,
        "events_in_failed_shards": int(sum(int(f["entry_stop"]) - int(f["entry_start"]) for f in failed)),
        "n_shards": len(chunks),
        "n_shards_finished": len(records),
        "events_in_files": int(sum(f["n_entries"] for f in plan["files"])),
        "events_read": total("events_read"),
        "events_tokenized": total("events_tokenized"),
        "events_truncated": total("events_truncated"),
        "objects": total("objects"),
        "objects_truncated": total("objects_truncated"),
        "events_rejected": total("events_rejected"),
        "rejected_reasons": reasons,
        "tokens": total("tokens"),
        "length": {
            "min": int(nz[0]) if len(nz) else 0,
            "median": _percentile_from_hist(hist, 0.5),
            "p99": _percentile_from_hist(hist, 0.99),
            "max": int(nz[-1]) if len(nz) else 0,
        },
        "max_length": plan["max_length"],
        "step_size": plan["step_size"],
        "tokenizer": plan["tokenizer"],
        "per_file": per_file,
        "reader_stats": _merge_reader_stats(r.get("reader_stats") for r in records),
        "this_run": run,
    }
    return summary


def write_index(out: Path, chunks: list[tuple[int, int, int, int]], skip_failed: bool = False) -> None:
    """``state.json`` + ``dataset_info.json`` as ``Dataset.save_to_disk`` writes them.

    ``skip_failed``: index the finished shards, leaving out those recorded as failed.
    """
    import datasets

    names = [shard_name(fi, ci) for fi, ci, _, _ in chunks]
    if skip_failed:
        names = [n for n in names if (out / n).is_file() or not _failed_path(out, n).is_file()]
    missing = [n for n in names if not (out / n).is_file()]
    if missing:
        raise RuntimeError(f"{out}: {len(missing)} shards are missing (first: {missing[0]}); rerun to finish them")
    features = _features()
    info = datasets.DatasetInfo(
        description="hep-tokenizers event token sequences (hep-tok tokenize)", features=features
    )
    fp = hashlib.sha256("".join(names).encode() + (out / PLAN_FILE).read_bytes()).hexdigest()[:16]
    state = {
        "_data_files": [{"filename": n} for n in names],
        "_fingerprint": fp,
        "_format_columns": None,
        "_format_kwargs": {},
        "_format_type": None,
        "_output_all_columns": False,
        "_split": None,
    }
    _write_json(out / "dataset_info.json", json.loads(_info_json(info)))
    _write_json(out / "state.json", state)


def _info_json(info: Any) -> str:
    import io

    buf = io.BytesIO()
    info._dump_info(buf, pretty_print=True)
    return buf.getvalue().decode()


# --------------------------------------------------------------------------- driver
def _distributed() -> tuple[int, int, Any]:
    """``(rank, world_size, state)``; a plain run is rank 0 of 1."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 or "ACCELERATE_PROCESS_INDEX" in os.environ:
        import torch
        from accelerate import PartialState

        # PartialState reads ACCELERATE_USE_CPU only through Accelerator: pass it (gloo on CPU-only hosts)
        cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes") or not torch.cuda.is_available()
        state = PartialState(cpu=cpu)
        return state.process_index, state.num_processes, state
    return 0, 1, None


def run(
    tokenizer: str | os.PathLike,
    out: str | os.PathLike,
    files: list[str | os.PathLike],
    step_size: int = DEFAULT_STEP,
    max_length: int | None = -1,
    num_workers: int = 1,
    format: str | None = None,
    tree: str | None = None,
    mapping: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
    process_index: int | None = None,
    num_processes: int | None = None,
) -> dict[str, Any]:
    """Tokenize ``files`` into the dataset folder ``out``; returns the summary (also in ``summary.json``).

    ``max_length=-1`` uses the tokenizer's ``model_max_length``; ``None`` disables truncation.
    ``process_index``/``num_processes`` split the shards without ``accelerate`` (e.g. a batch
    array job: run every index, then once more with any index to write the index files);
    under ``accelerate launch`` they come from ``PartialState``.
    """
    from tqdm.auto import tqdm

    tok_dir = Path(tokenizer)
    out = Path(out)
    paths = [Path(f).resolve() for f in files]
    for p in paths:
        if not p.is_file():
            raise FileNotFoundError(f"input file {p} does not exist")
    if step_size <= 0:
        raise ValueError(f"--step_size must be positive, got {step_size}")
    if num_processes is not None:
        rank, world, state = int(process_index or 0), int(num_processes), None
        if not 0 <= rank < world:
            raise ValueError(f"process_index {rank} is outside 0..{world - 1}")
    else:
        rank, world, state = _distributed()

    if max_length == -1:
        cfg = json.loads((tok_dir / "event_tokenizer.json").read_text()) if (tok_dir / "event_tokenizer.json").is_file() else {}
        max_length = int(cfg.get("sequence", {}).get("model_max_length", 128))
    if not (tok_dir / "event_tokenizer.json").is_file():
        raise FileNotFoundError(f"{tok_dir} is not a saved EventTokenizer folder (no event_tokenizer.json)")

    plan = make_plan(paths, tok_dir.resolve(), step_size, max_length, format, tree, mapping)
    if rank == 0 or state is None:
        out.mkdir(parents=True, exist_ok=True)
        (out / PROGRESS_DIR).mkdir(exist_ok=True)
        plan_path = out / PLAN_FILE
        if plan_path.is_file() and not overwrite:
            old = json.loads(plan_path.read_text())
            if old != plan and not _plans_compatible(old, plan):
                diff = sorted(k for k in set(old) | set(plan) if old.get(k) != plan.get(k))
                raise RuntimeError(
                    f"{out} holds a tokenization run with different {diff}; pass --overwrite to start over "
                    "or choose another --out"
                )
        elif overwrite:
            for p in list(out.glob("data-*.arrow")) + list(out.glob(".data-*.tmp*")) + list((out / PROGRESS_DIR).glob("*.json")):
                p.unlink()
            for name in ("state.json", "dataset_info.json", SUMMARY_FILE):
                (out / name).unlink(missing_ok=True)
        _write_json(plan_path, plan)
        # temporary files of a killed run (never read: shards appear only by atomic rename)
        for p in list(out.glob(".data-*.tmp*")) + list((out / PROGRESS_DIR).glob(".*.tmp*")):
            p.unlink(missing_ok=True)
    if state is not None:
        state.wait_for_everyone()

    chunks = plan_chunks(plan)
    mine = chunks[rank::world]
    todo = [c for c in mine if not (out / shard_name(c[0], c[1])).is_file()]
    skipped = len(mine) - len(todo)
    if todo and (out / "state.json").exists() and (rank == 0 or state is None):
        (out / "state.json").unlink()  # the index is rewritten when every shard exists again
    logger.info("rank %d/%d: %d shards, %d already finished", rank, world, len(mine), skipped)
    t0 = time.perf_counter()
    n_events = 0
    bar = tqdm(total=sum(c[3] - c[2] for c in todo), unit="ev", desc=f"tokenize[{rank}]", disable=not progress)
    n_failed = 0

    def finish(c: Any, result: Callable[[], dict]) -> None:
        """Count one chunk's result; a failed chunk is recorded and the others go on."""
        nonlocal n_events, n_failed
        try:
            s = result()
        except BrokenProcessPool as exc:
            raise RuntimeError(f"a tokenize worker process died ({exc}); rerun to resume") from exc
        except Exception as exc:  # noqa: BLE001 - a bad shard is recorded; the others go on
            _record_failure(out, c, plan, exc)
            n_failed += 1
            bar.update(c[3] - c[2])
            return
        n_events += s["events_read"]
        bar.update(s["events_read"])

    if num_workers <= 1 or len(todo) <= 1:
        _init_worker(str(tok_dir), None)
        for c in todo:
            finish(c, lambda c=c: process_chunk(c, plan, str(out)))
    else:
        threads = max(1, (os.cpu_count() or 1) // num_workers)
        with ProcessPoolExecutor(
            max_workers=num_workers, mp_context=get_context("spawn"), initializer=_init_worker, initargs=(str(tok_dir), threads)
        ) as pool:
            futures = [pool.submit(_process_in_worker, c, plan, str(out)) for c in todo]
            for c, fut in zip(todo, futures):
                finish(c, fut.result)
    bar.close()
    seconds = time.perf_counter() - t0
    run_info = {
        "ranks": world,
        "num_workers": num_workers,
        "shards_written": len(todo) - n_failed,
        "shards_failed": n_failed,
        "shards_skipped_existing": skipped,
        "events_read": n_events,
        "seconds": round(seconds, 3),
        "events_per_second": round(n_events / seconds, 1) if seconds > 0 and n_events else None,
    }
    if state is not None and world > 1:  # every rank's counts of this run, merged by rank 0
        _write_json(out / PROGRESS_DIR / f"_run_rank{rank}.json", run_info)
        state.wait_for_everyone()
        if rank == 0:
            infos = [json.loads((out / PROGRESS_DIR / f"_run_rank{r}.json").read_text()) for r in range(world)]
            for key in ("shards_written", "shards_failed", "shards_skipped_existing", "events_read"):
                run_info[key] = sum(int(i[key]) for i in infos)
            run_info["seconds"] = max(float(i["seconds"]) for i in infos)
            run_info["events_per_second"] = (
                round(run_info["events_read"] / run_info["seconds"], 1) if run_info["seconds"] > 0 and run_info["events_read"] else None
            )
    summary: dict[str, Any] = {}
    if rank == 0 or state is None:
        summary = summarize(out, plan, chunks, run_info)
        if summary["n_shards_finished"] + summary["n_failed_shards"] == len(chunks):
            # every shard finished or failed: index the finished ones (bad inputs are in the summary)
            write_index(out, chunks, skip_failed=True)
        _write_json(out / SUMMARY_FILE, summary)
    if state is not None:
        state.wait_for_everyone()
    return summary


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hep-tok tokenize",
        description="Tokenize ROOT files into a HuggingFace dataset (Arrow shards; datasets.load_from_disk(OUT)).",
    )
    p.add_argument("files", nargs="*", help="ROOT files (default: the embedded sample)")
    p.add_argument("--tokenizer", required=True, help="a saved EventTokenizer folder")
    p.add_argument("--out", required=True, help="dataset folder (created; rerun to resume)")
    p.add_argument("--step_size", type=int, default=DEFAULT_STEP, help="entries per shard (default %(default)s)")
    p.add_argument("--max_length", type=int, default=-1, help="truncate to this many tokens (default: the tokenizer's model_max_length)")
    p.add_argument("--no_truncation", action="store_true", help="keep every object, whatever the length")
    p.add_argument("--num_workers", type=int, default=1, help="worker processes (default %(default)s)")
    p.add_argument("--format", default=None, help="input format (default: detected)")
    p.add_argument("--tree", default=None, help="tree name (default: detected)")
    p.add_argument("--mapping", default=None, help="mapping file for own branch layouts")
    p.add_argument("--overwrite", action="store_true", help="discard an existing run in --out")
    p.add_argument("--summary", default=None, help="also copy the summary JSON here")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--process_index", type=int, default=None, help="this job's index when splitting without accelerate")
    p.add_argument("--num_processes", type=int, default=None, help="number of jobs when splitting without accelerate")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    files = args.files
    if not files:
        from .data import sample_path

        files = [str(sample_path())]
    try:
        summary = run(
            args.tokenizer,
            args.out,
            files,
            step_size=args.step_size,
            max_length=None if args.no_truncation else args.max_length,
            num_workers=args.num_workers,
            format=args.format,
            tree=args.tree,
            mapping=args.mapping,
            overwrite=args.overwrite,
            progress=not args.quiet,
            process_index=args.process_index,
            num_processes=args.num_processes,
        )
    except (FileNotFoundError, RuntimeError, ValueError) as exc:
        print(f"hep-tok tokenize: error: {exc}", file=sys.stderr)
        return 1
    if summary:
        if args.summary:
            _write_json(Path(args.summary), summary)
        keys = ("events_read", "events_tokenized", "events_truncated", "events_rejected", "n_shards", "complete",
                "n_bad_files", "n_failed_shards")
        print(json.dumps({k: summary[k] for k in keys} | {"length": summary["length"], "this_run": summary["this_run"]}))
        if not summary["ok"]:
            for f in summary["bad_files"]:
                print(f"hep-tok tokenize: bad input file {f['path']}: {f['error']}", file=sys.stderr)
            for f in summary["failed_shards"]:
                print(
                    f"hep-tok tokenize: shard {f['shard']} ({f['source_file']}, entries {f['entry_start']}-{f['entry_stop']}) "
                    f"failed: {f['error']}",
                    file=sys.stderr,
                )
            print(f"hep-tok tokenize: finished the readable inputs; see {Path(args.out) / SUMMARY_FILE}", file=sys.stderr)
            return EXIT_BAD_INPUT
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
