"""Peak RSS of `hep-tok tokenize` for N vs 10N events (streaming must keep memory flat).

    python benchmarks/tokenize_memory.py [--events 20000] [--step_size 5000] [--tokenizer TOK_DIR]

Writes a native ROOT file of N and one of 10N synthetic events, then runs `hep-tok tokenize`
on each in a fresh subprocess and reads its peak RSS (``ru_maxrss`` of the child). Without
``--tokenizer`` a random export with the study's size (4 levels x 16384 codes, dimension 8)
is built. Prints both peaks side by side with their ratio (target: <= 1.2) and the events/s.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _child_peak_mb(cmd: list[str]) -> tuple[float, float, str]:
    """Run ``cmd`` in a new process that reports its own peak RSS; returns (MB, seconds, stdout)."""
    code = (
        "import resource, sys, json\n"
        "from hep_tokenizers.tokenize_files import main\n"
        f"rc = main({cmd!r})\n"
        "print('PEAK_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
        "sys.exit(rc)\n"
    )
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    dt = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(res.stderr[-2000:])
    kb = [int(line.split()[1]) for line in res.stdout.splitlines() if line.startswith("PEAK_KB")][0]
    return kb / 1024.0, dt, res.stdout


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=20_000, help="N (the large run has 10N)")
    p.add_argument("--step_size", type=int, default=5_000)
    p.add_argument("--tokenizer", default=None, help="a saved EventTokenizer (default: random 4x16384 export)")
    p.add_argument("--codebook_size", type=int, default=16384)
    args = p.parse_args()

    from hep_tokenizers.io.native import write_native
    from hep_tokenizers.tokenization_event import EventTokenizer
    from tests.synthetic import make_events

    with tempfile.TemporaryDirectory(prefix="hep-tok-mem-") as tmp:
        tmp = Path(tmp)
        tok_dir = Path(args.tokenizer) if args.tokenizer else tmp / "tok"
        if not args.tokenizer:
            from tests.export_fixtures import make_random_export

            export = make_random_export(tmp / "export", codebook_sizes=(args.codebook_size,) * 4, codebook_dim=8)
            EventTokenizer.from_export(export).save_pretrained(tok_dir)
        small, large = tmp / "small.root", tmp / "large.root"
        write_native(small, make_events(args.events, seed=1))
        # the large file is written chunk by chunk so the writer's memory does not matter here
        big = make_events(args.events, seed=2)
        import awkward as ak

        write_native(large, ak.concatenate([big] * 10))
        del big
        rows = []
        for name, f, n in (("N", small, args.events), ("10N", large, 10 * args.events)):
            out = tmp / f"ds_{name}"
            mb, dt, stdout = _child_peak_mb(
                ["--tokenizer", str(tok_dir), "--out", str(out), "--step_size", str(args.step_size), "--quiet", str(f)]
            )
            summary = json.loads((out / "summary.json").read_text())
            assert summary["events_tokenized"] == n, summary
            rows.append((name, n, mb, dt, summary["this_run"]["events_per_second"]))
    print(f"{'run':<5} {'events':>9} {'peak RSS [MB]':>14} {'wall [s]':>9} {'events/s (tokenize loop)':>25}")
    for name, n, mb, dt, eps in rows:
        print(f"{name:<5} {n:>9} {mb:>14.1f} {dt:>9.1f} {eps:>25}")
    ratio = rows[1][2] / rows[0][2]
    print(f"peak RSS ratio 10N / N = {ratio:.3f} (target <= 1.2): {'OK' if ratio <= 1.2 else 'FAIL'}")
    return 0 if ratio <= 1.2 else 1


if __name__ == "__main__":
    sys.exit(main())
