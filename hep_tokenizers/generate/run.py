"""Chunked, multi-process event generation with seeds that do not depend on the worker count.

A run of ``n_events`` of a process is split into chunks of ``chunk_size`` events. Chunk ``c``
of process ``p`` gets its Pythia seed and its detector-smearing generator from
``numpy.random.SeedSequence([seed, mixed, process_index, c])``, so the output depends only on
``(process, n_events, seed, chunk_size)``: any number of workers, in any order, gives the same
file. The "mixed" process splits ``n_events`` over :data:`~.pythia.MIXTURE` (largest remainder)
and shuffles the events with a permutation drawn from the seed.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable

import awkward as ak
import numpy as np

from .pythia import MIXTURE, PROCESSES, generate_truth, make_pythia, pythia_settings

PROCESS_NAMES: tuple[str, ...] = tuple(PROCESSES)
#: Stable process ids written to ``process_id`` (same table in every generated file).
PROCESS_IDS: dict[str, int] = {name: i for i, name in enumerate(PROCESS_NAMES)}
DEFAULT_CHUNK_SIZE = 500
_EVENT_ID_STRIDE = 1_000_000_000  # event_number = process_id * stride + index within the process


@dataclass(frozen=True)
class ChunkTask:
    """One unit of work: ``n_events`` events of ``process``, chunk number ``index``."""

    process: str
    index: int
    n_events: int
    first_event: int
    seed: int
    mixed: bool


def process_counts(process: str, n_events: int) -> dict[str, int]:
    """Events per process: all for a single process, largest-remainder split of MIXTURE for 'mixed'."""
    if n_events < 1:
        raise ValueError(f"--events must be at least 1, got {n_events}")
    if process != "mixed":
        if process not in PROCESSES:
            raise ValueError(f"unknown process {process!r}; choose from {[*PROCESS_NAMES, 'mixed']}")
        return {process: n_events}
    exact = {p: f * n_events for p, f in MIXTURE.items()}
    counts = {p: int(np.floor(v)) for p, v in exact.items()}
    rest = n_events - sum(counts.values())
    for p in sorted(exact, key=lambda p: (-(exact[p] - counts[p]), PROCESS_IDS[p]))[:rest]:
        counts[p] += 1
    return {p: c for p, c in counts.items() if c > 0}


def plan_chunks(process: str, n_events: int, seed: int, chunk_size: int = DEFAULT_CHUNK_SIZE) -> list[ChunkTask]:
    """The chunk tasks of a run (in output order, before the 'mixed' shuffle)."""
    if chunk_size < 1:
        raise ValueError(f"chunk size must be at least 1, got {chunk_size}")
    if seed < 0:
        raise ValueError(f"--seed must be non-negative, got {seed}")
    tasks = []
    mixed = process == "mixed"
    for proc, count in process_counts(process, n_events).items():
        for c, start in enumerate(range(0, count, chunk_size)):
            tasks.append(ChunkTask(proc, c, min(chunk_size, count - start), start, seed, mixed))
    return tasks


def chunk_seeds(task: ChunkTask) -> tuple[int, np.random.Generator]:
    """Pythia seed (in [1, 900000000]) and the detector-smearing generator of one chunk."""
    ss = np.random.SeedSequence([task.seed, int(task.mixed), PROCESS_IDS[task.process], task.index])
    pythia_seed = int(ss.generate_state(1, dtype=np.uint32)[0] % 900_000_000) + 1
    return pythia_seed, np.random.default_rng(ss.spawn(1)[0])


def run_chunk(task: ChunkTask) -> ak.Array:
    """Generate and simulate one chunk; returns its event array with process, weight, event_number."""
    from .detector import simulate

    pythia_seed, rng = chunk_seeds(task)
    truth = generate_truth(task.process, task.n_events, pythia_seed, make_pythia(task.process, pythia_seed))
    events = simulate(truth, rng)
    n = len(events)
    pid = PROCESS_IDS[task.process]
    events = ak.with_field(events, ak.Array([task.process] * n), "process")
    events = ak.with_field(events, np.ones(n, dtype=np.float64), "weight")
    numbers = pid * _EVENT_ID_STRIDE + task.first_event + np.arange(n, dtype=np.int64)
    return ak.with_field(events, numbers, "event_number")


def _run_indexed(item: tuple[int, ChunkTask]) -> tuple[int, ak.Array]:
    i, task = item
    return i, run_chunk(task)


def generate_events(
    process: str,
    n_events: int,
    seed: int,
    workers: int = 1,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: bool = True,
    on_chunk: Callable[[int], None] | None = None,
) -> ak.Array:
    """Generate ``n_events`` of ``process`` (or "mixed") as a schema event array.

    Deterministic in ``(process, n_events, seed, chunk_size)`` and independent of ``workers``.
    """
    tasks = plan_chunks(process, n_events, seed, chunk_size)
    results: list[ak.Array | None] = [None] * len(tasks)
    bar = _progress(n_events, process, progress)
    try:
        if workers <= 1 or len(tasks) == 1:
            for i, task in enumerate(tasks):
                results[i] = run_chunk(task)
                bar.update(task.n_events)
                if on_chunk:
                    on_chunk(task.n_events)
        else:
            ctx = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
            with ctx.Pool(min(workers, len(tasks))) as pool:
                for i, events in pool.imap_unordered(_run_indexed, list(enumerate(tasks)), chunksize=1):
                    results[i] = events
                    bar.update(tasks[i].n_events)
                    if on_chunk:
                        on_chunk(tasks[i].n_events)
    finally:
        bar.close()
    events = ak.concatenate(results, axis=0) if len(results) > 1 else results[0]
    if process == "mixed":
        perm = np.random.default_rng(np.random.SeedSequence([seed, 1, 99])).permutation(len(events))
        events = events[perm]
    events = ak.with_field(events, np.arange(len(events), dtype=np.int64), "entry")
    return ak.Array(ak.to_packed(events))


def _progress(total: int, process: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"generate {process}", unit="ev", disable=not enabled, file=sys.stderr)


def generator_meta(process: str, n_events: int, seed: int, chunk_size: int, workers: int, argv: list[str] | None) -> dict[str, Any]:
    """Metadata stored with a generated file: command, seed, settings, detector model, versions."""
    from importlib.metadata import PackageNotFoundError, version

    from .. import __version__
    from . import detector

    def _v(pkg: str) -> str:
        try:
            return version(pkg)
        except PackageNotFoundError:  # pragma: no cover
            return "unknown"

    procs = process_counts(process, n_events)
    det = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in vars(detector).items() if k.isupper()}
    det = {k: ({str(kk): vv for kk, vv in v.items()} if isinstance(v, dict) else v) for k, v in det.items()}
    return {
        "process_labels": {str(i): name for name, i in PROCESS_IDS.items()},
        "generator": {
            "command": "hep-tok generate " + " ".join(argv) if argv is not None else None,
            "process": process,
            "n_events": n_events,
            "seed": seed,
            "chunk_size": chunk_size,
            "workers": workers,
            "events_per_process": procs,
            "mixture": dict(MIXTURE) if process == "mixed" else None,
            "pythia_settings": {p: [s for s in pythia_settings(p, 0) if not s.startswith("Random:seed =")] for p in procs},
            "pythia_seed": "per chunk: SeedSequence([seed, mixed, process_id, chunk]) -> [1, 9e8]",
            "detector": det,
            "jets": "FastJet anti-kt R=0.4",
            "versions": {
                "hep_tokenizers": __version__,
                "pythia8mc": _v("pythia8mc"),
                "fastjet": _v("fastjet"),
                "awkward": ak.__version__,
            },
            "host_cpus": os.cpu_count(),
        },
    }
