"""`hep-tok generate`: Pythia 8 + FastJet + a simple detector response -> native ROOT file."""

from __future__ import annotations

import argparse
import os
import sys
import time

from .run import DEFAULT_CHUNK_SIZE, PROCESS_NAMES


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of ``hep-tok generate``."""
    p = argparse.ArgumentParser(
        prog="hep-tok generate",
        description=(
            "Generate 13 TeV pp events with Pythia 8 (hadron level, MPI on), cluster anti-kt R=0.4 jets "
            "with FastJet, apply the documented detector response (docs/generator.md) and write the "
            "hep_tokenizers native ROOT layout. The output depends only on --process, --events, --seed "
            "and --chunk-size, never on --workers."
        ),
    )
    p.add_argument("--process", required=True, choices=[*PROCESS_NAMES, "mixed"], help="hard process, or 'mixed' (documented mixture)")
    p.add_argument("--events", type=int, required=True, help="number of events")
    p.add_argument("--out", required=True, help="output ROOT file (written atomically)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="worker processes (default: min(4, CPUs))")
    p.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE, help=f"events per seeded chunk (default {DEFAULT_CHUNK_SIZE})")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``hep-tok generate``; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.events < 1:
        print(f"hep-tok generate: --events must be at least 1 (got {args.events})", file=sys.stderr)
        return 2
    if args.seed < 0:
        print(f"hep-tok generate: --seed must be non-negative (got {args.seed})", file=sys.stderr)
        return 2
    if args.chunk_size < 1:
        print(f"hep-tok generate: --chunk-size must be at least 1 (got {args.chunk_size})", file=sys.stderr)
        return 2
    try:
        import fastjet  # noqa: F401
        import pythia8mc  # noqa: F401
    except ImportError as exc:
        print(
            f"hep-tok generate needs the optional generator packages ({exc.name} missing): "
            "pip install 'hep-tokenizers[generate]'",
            file=sys.stderr,
        )
        return 1
    from ..io.native import write_native
    from .run import generate_events, generator_meta

    out_dir = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(out_dir):
        print(f"hep-tok generate: output directory {out_dir} does not exist", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    events = generate_events(args.process, args.events, args.seed, args.workers, args.chunk_size, progress=not args.no_progress)
    elapsed = time.perf_counter() - t0
    meta = generator_meta(args.process, args.events, args.seed, args.chunk_size, args.workers, argv)
    meta["generator"]["wall_seconds"] = round(elapsed, 1)
    write_native(args.out, events, meta)
    size = os.path.getsize(args.out) / 1e6
    print(
        f"wrote {len(events)} {args.process} events to {args.out} ({size:.1f} MB) in {elapsed:.1f} s "
        f"({len(events) / elapsed:.1f} events/s with {args.workers} worker(s))"
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
