"""Events/s of ``iter_events`` vs plain ``uproot.iterate`` of the same branches, side by side.

    python benchmarks/read_throughput.py [--events 200000] [--step 50000] [--file f.root]

Without ``--file`` a NanoAOD-like tree of ``--events`` events is written with
``tests/format_writers.py`` into a temporary folder. Target: our overhead at most 2x.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import uproot

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hep_tokenizers.io import iter_events, open_events  # noqa: E402


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--step", type=int, default=50_000)
    ap.add_argument("--file", default=None)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.file
        if path is None:
            from tests.format_writers import write_nanoaod

            path = str(Path(tmp) / "bench_nanoaod.root")
            t0 = time.perf_counter()
            write_nanoaod(path, n=args.events, seed=0)
            print(f"wrote {args.events} events to {path} in {time.perf_counter() - t0:.1f} s")
        with open_events(path) as src:
            branches, tree_name, n = src.branches, src.tree_name, src.num_entries
        print(f"file: {path}  format: {src.format}  events: {n}  branches read: {len(branches)}")

        def plain() -> None:
            with uproot.open(path) as f:
                for _ in f[tree_name].iterate(filter_name=branches, step_size=args.step, library="ak"):
                    pass

        def ours() -> None:
            for _ in iter_events(path, step_size=args.step):
                pass

        plain()  # warm caches
        t_plain = best_of(plain, args.repeat)
        t_ours = best_of(ours, args.repeat)
        print(f"{'reader':<28} {'time [s]':>9} {'events/s':>12}")
        print(f"{'uproot.iterate (baseline)':<28} {t_plain:9.3f} {n / t_plain:12,.0f}")
        print(f"{'hep_tokenizers.iter_events':<28} {t_ours:9.3f} {n / t_ours:12,.0f}")
        ratio = t_ours / t_plain
        print(f"overhead: {ratio:.2f}x (target <= 2x) -> {'OK' if ratio <= 2 else 'ABOVE TARGET'}")


if __name__ == "__main__":
    main()
