"""Peak RSS when streaming N vs 10N events with ``iter_events`` (each in a fresh subprocess).

    python benchmarks/read_memory.py [--events 40000] [--step 10000]

Writes NanoAOD-like trees of N and 10N events with ``tests/format_writers.py``; streaming must
keep memory flat in file size: peak RSS(10N) / peak RSS(N) within 1.2. A plain
``read_events`` of the 10N file is shown for comparison (that one grows with the file).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import resource, sys
sys.path.insert(0, {root!r})
from hep_tokenizers.io import iter_events, read_events
mode, path, step = sys.argv[1], sys.argv[2], int(sys.argv[3])
n = 0
if mode == "stream":
    for chunk in iter_events(path, step_size=step):
        n += len(chunk)
else:
    n = len(read_events(path))
print(n, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def peak_rss(mode: str, path: Path, step: int) -> tuple[int, float]:
    out = subprocess.run([sys.executable, "-c", CHILD.format(root=str(ROOT)), mode, str(path), str(step)],
                         capture_output=True, text=True, check=True).stdout.split()
    return int(out[0]), int(out[1]) / 1024.0  # ru_maxrss is in KiB on Linux


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=40_000)
    ap.add_argument("--step", type=int, default=10_000)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from tests.format_writers import write_nanoaod

    with tempfile.TemporaryDirectory() as tmp:
        small, big = Path(tmp) / "n.root", Path(tmp) / "10n.root"
        t0 = time.perf_counter()
        write_nanoaod(small, n=args.events, seed=0)
        write_nanoaod(big, n=10 * args.events, seed=1)
        print(f"wrote {args.events} and {10 * args.events} events in {time.perf_counter() - t0:.1f} s "
              f"({small.stat().st_size / 1e6:.1f} MB, {big.stat().st_size / 1e6:.1f} MB)")
        rows = [
            ("iter_events, N", *peak_rss("stream", small, args.step)),
            ("iter_events, 10N", *peak_rss("stream", big, args.step)),
            ("read_events (all), 10N", *peak_rss("read", big, args.step)),
        ]
        print(f"{'mode':<26} {'events':>9} {'peak RSS [MB]':>14}")
        for name, n, rss in rows:
            print(f"{name:<26} {n:9d} {rss:14.1f}")
        ratio = rows[1][2] / rows[0][2]
        print(f"streaming peak RSS ratio 10N/N: {ratio:.3f} (target <= 1.2) -> {'OK' if ratio <= 1.2 else 'ABOVE TARGET'}")


if __name__ == "__main__":
    main()
