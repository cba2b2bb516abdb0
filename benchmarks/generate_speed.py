"""Generator speed per process on one core: Pythia alone (baseline) vs the full chain.

Columns: Pythia ``next()`` only (hadron level, MPI on) | + truth extraction loop | + detector
response (FastJet clustering, smearing, MET) = the full per-event cost of ``hep-tok generate``.

    python benchmarks/generate_speed.py [--events 200] [--processes ttbar zjets ...]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    from hep_tokenizers.generate.detector import simulate
    from hep_tokenizers.generate.pythia import PROCESSES, generate_truth, make_pythia

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=200)
    ap.add_argument("--processes", nargs="*", default=list(PROCESSES))
    args = ap.parse_args()
    n = args.events
    print(f"{'process':<10} {'init [s]':>9} {'pythia only [ev/s]':>19} {'+truth [ev/s]':>14} {'full chain [ev/s]':>18} {'full/pythia':>12}")
    for proc in args.processes:
        t0 = time.perf_counter()
        py = make_pythia(proc, 12345)
        t_init = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(n):
            py.next()
        t_pythia = time.perf_counter() - t0
        py = make_pythia(proc, 12345)
        t0 = time.perf_counter()
        truth = generate_truth(proc, n, 12345, py)
        t_truth = time.perf_counter() - t0
        t0 = time.perf_counter()
        simulate(truth, np.random.default_rng(1))
        t_det = time.perf_counter() - t0
        full = t_truth + t_det
        print(f"{proc:<10} {t_init:>9.2f} {n / t_pythia:>19.1f} {n / t_truth:>14.1f} {n / full:>18.1f} {t_pythia / full:>12.2f}")


if __name__ == "__main__":
    main()
