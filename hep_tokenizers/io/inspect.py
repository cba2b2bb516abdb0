"""``hep-tok inspect f.root``: format, tree, events, objects per type and token lengths."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import awkward as ak
import numpy as np

from ..schema import GROUP_NAMES
from ..sequence import sequence_length
from . import ReadError, ReadStats, open_events

N_LEVELS = 4


def inspect_file(
    path: str,
    format: str | None = None,
    mapping: str | None = None,
    tree: str | None = None,
    step_size: int = 50000,
    max_events: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Summary of one file, streamed chunk by chunk (flat memory)."""
    counts: dict[str, list[np.ndarray]] = {g: [] for g in GROUP_NAMES}
    with open_events(path, format=format, mapping=mapping, tree=tree) as src:
        stop = src.num_entries if max_events is None else min(max_events, src.num_entries)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=stop, unit="ev", desc=f"inspect {path}", file=sys.stderr)
        for chunk in src.iterate(step_size, entry_stop=stop):
            for g in GROUP_NAMES:
                counts[g].append(ak.to_numpy(ak.num(chunk[g], axis=1)).astype(np.int64))
            if bar is not None:
                bar.update(len(chunk))
        if bar is not None:
            bar.close()
        stats: ReadStats = src.stats
        out: dict[str, Any] = {
            "file": str(path),
            "format": src.format,
            "tree": src.tree_name,
            "events_in_file": src.num_entries,
            "events_read": int(stop),
        }
    per = {g: np.concatenate(c) if c else np.zeros(0, np.int64) for g, c in counts.items()}
    total = sum(per.values()) if per else np.zeros(0, np.int64)
    out["objects"] = {
        g: {"mean": float(v.mean()) if v.size else 0.0, "max": int(v.max()) if v.size else 0} for g, v in per.items()
    }
    lengths = sequence_length(total, n_levels=N_LEVELS) if len(total) else np.zeros(0, np.int64)
    out["token_length"] = {
        "n_levels": N_LEVELS,
        "median": float(np.median(lengths)) if lengths.size else 0.0,
        "p99": float(np.percentile(lengths, 99)) if lengths.size else 0.0,
        "max": int(lengths.max()) if lengths.size else 0,
    }
    out["read_stats"] = stats.to_dict()
    return out


def format_report(info: dict[str, Any]) -> str:
    """Human-readable text of :func:`inspect_file`'s summary."""
    lines = [
        f"file:    {info['file']}",
        f"format:  {info['format']}",
        f"tree:    {info['tree']}",
        f"events:  {info['events_in_file']}" + (
            f" (read {info['events_read']})" if info["events_read"] != info["events_in_file"] else ""),
        "",
        f"{'objects':<10} {'mean':>7} {'max':>5}",
    ]
    for g, o in info["objects"].items():
        lines.append(f"{g:<10} {o['mean']:7.2f} {o['max']:5d}")
    t = info["token_length"]
    lines += ["", f"token length ({t['n_levels']} levels): median {t['median']:g}, 99% {t['p99']:g}, max {t['max']}"]
    rs = info["read_stats"]
    if rs["removed"] or rs["masked"] or rs["missing"]:
        lines += ["", "read notes:"]
        lines += [f"  removed {k}: {v}" for k, v in rs["removed"].items()]
        lines += [f"  set to None {k}: {v}" for k, v in rs["masked"].items()]
        lines += [f"  absent {k} (looked for {v})" for k, v in rs["missing"].items()]
    for n in rs["notes"]:
        lines.append(f"  note: {n}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``hep-tok inspect``."""
    parser = argparse.ArgumentParser(prog="hep-tok inspect", description=__doc__)
    parser.add_argument("files", nargs="*", help="ROOT files (default: the embedded sample)")
    parser.add_argument("--format", default=None, help="force a format (physlite, nanoaod, atlas_opendata, delphes, ...)")
    parser.add_argument("--mapping", default=None, help="YAML/JSON mapping file for other layouts")
    parser.add_argument("--tree", default=None, help="tree name (default: detected)")
    parser.add_argument("--max-events", type=int, default=None, help="read at most this many events per file")
    parser.add_argument("--json", action="store_true", help="machine-readable JSON output")
    args = parser.parse_args(argv)
    files = args.files
    if not files:
        from ..data import sample_path

        try:
            files = [str(sample_path())]
        except FileNotFoundError as exc:
            print(f"hep-tok inspect: no file given and {exc}", file=sys.stderr)
            return 2
    results = []
    status = 0
    for f in files:
        try:
            results.append(inspect_file(f, args.format, args.mapping, args.tree, max_events=args.max_events,
                                        progress=not args.json and sys.stderr.isatty()))
        except ReadError as exc:
            print(f"hep-tok inspect: {exc}", file=sys.stderr)
            status = 1
    if args.json:
        print(json.dumps(results if len(results) != 1 else results[0], indent=2))
    else:
        print("\n\n".join(format_report(r) for r in results))
    return status
