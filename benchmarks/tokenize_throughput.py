"""Tokenization throughput: the project's exact encode vs vector-quantize-pytorch vs brute force.

One run prints, side by side, objects/s and events/s (at the mean objects per event of the
embedded sample, or of the synthetic events when the sample is absent) for

* ``hep_tokenizers.codebook`` encode (search "kernel" = the compiled exact cell scan, the
  "auto" choice on CPU; "gemm" = blocked GEMM; "ivf" = exact IVF in torch; "kdtree"),
* vector-quantize-pytorch ``ResidualVQ`` eval forward with the same weights copied in
  (``project_in``/``project_out`` + every level's ``_codebook.embed``), same inputs,
* plain torch brute force (``||r||^2 - 2 r.C + ||C||^2``, argmin, in chunks),

all from the same encoder inputs (the encoder MLP is included in every column), on jets of
a random export with 4 levels x 16384 codes, dimension 8 (``--dim 16`` for the optional size)
whose codebooks are fitted level by level by k-means to the residuals of the embedded sample's
real jets (the default, ``--codebooks kmeans``: what the training's k-means initialisation
produces; inputs are those jets); with ``--codebooks gaussian`` Gaussian codebooks with each
level's residual mean and width on synthetic jets (no structure: the worst case for the
pruning); or with
``--tokenizer DIR`` a trained tokenizer (an ``EventTokenizer`` or ``train-tokenizer`` output
folder) on the embedded sample's real jets.
It also prints how many codes each baseline shares with the exact encode, and the process
CPU time per object (all threads), which stays comparable when the machine is shared.

Run: ``python benchmarks/tokenize_throughput.py [--objects 32768] [--dim 8] [--threads 2]
[--codebooks gaussian|kmeans | --tokenizer DIR] [--skip-slow]``
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hep_tokenizers.codebook import ObjectCodec, load_export  # noqa: E402
from tests.export_fixtures import make_random_export  # noqa: E402
from tests.synthetic import MEAN_MULTIPLICITY, make_events  # noqa: E402


def mean_objects_per_event() -> tuple[float, str]:
    """Mean tokenized objects per event (met block + all groups) of the embedded sample."""
    try:
        import awkward as ak

        from hep_tokenizers import read_events
        from hep_tokenizers.data import sample_path
        from hep_tokenizers.schema import DEFAULT_SCHEMA

        events = read_events(sample_path())
        n = len(DEFAULT_SCHEMA.event_blocks) + sum(
            float(ak.mean(ak.num(events[g.name], axis=1))) for g in DEFAULT_SCHEMA.groups
        )
        return n, f"embedded sample ({len(events)} events)"
    except Exception as e:  # sample or reader not available yet
        return 1.0 + sum(MEAN_MULTIPLICITY.values()), f"synthetic multiplicities (embedded sample unavailable: {type(e).__name__})"


CPU_SECONDS: dict[int, float] = {}  # id(result) -> process CPU seconds of its best run


def timed(fn: Callable[[], np.ndarray], repeat: int = 1) -> tuple[float, np.ndarray]:
    """Best wall time of ``repeat`` runs and the last result (its CPU time in CPU_SECONDS)."""
    best, out, cpu = float("inf"), None, float("nan")
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        wall = time.perf_counter() - t0
        if wall < best:
            best, cpu = wall, time.process_time() - c0
    CPU_SECONDS[id(out)] = cpu
    return best, out  # type: ignore[return-value]


def latent32(codec: ObjectCodec, x: np.ndarray) -> torch.Tensor:
    """Encoder MLP in float32 torch (what the baselines get: the pre-``project_in`` latent)."""
    h = torch.from_numpy(x)
    for i, layer in enumerate(codec.encoder):
        h = torch.nn.functional.linear(h, layer.weight, layer.bias)
        if i < len(codec.encoder) - 1:
            h = torch.nn.functional.gelu(h)
    return h


def vqpt_rvq(codec: ObjectCodec) -> torch.nn.Module:
    """A vector-quantize-pytorch ResidualVQ holding the codec's project_in/out and codebooks."""
    from vector_quantize_pytorch import ResidualVQ

    latent_dim = codec.encoder[-1].weight.shape[0]
    rvq = ResidualVQ(
        dim=latent_dim,
        codebook_dim=codec.codebook_dim,
        num_quantizers=codec.n_levels,
        codebook_size=codec.codebook_sizes[0],
        kmeans_init=False,
    )
    with torch.no_grad():
        if codec.project_in is not None:
            rvq.project_in.weight.copy_(codec.project_in.weight)
            rvq.project_in.bias.copy_(codec.project_in.bias)
            rvq.project_out.weight.copy_(codec.project_out.weight)
            rvq.project_out.bias.copy_(codec.project_out.bias)
        for lvl, layer in enumerate(rvq.layers):
            layer._codebook.embed.copy_(torch.from_numpy(codec.codebooks[lvl])[None])
    return rvq.eval()


def brute_force(codec: ObjectCodec, x: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """Plain torch brute force: float32 expansion distance + argmin per level, in chunks."""
    with torch.no_grad():
        h = latent32(codec, x)
        if codec.project_in is not None:
            h = torch.nn.functional.linear(h, codec.project_in.weight, codec.project_in.bias)
        r = h
        codes = torch.empty((len(x), codec.n_levels), dtype=torch.int64)
        for lvl, cb in enumerate(codec._codebooks_t):
            c2 = (cb * cb).sum(1)
            for lo in range(0, len(r), chunk):
                rb = r[lo : lo + chunk]
                d = (rb * rb).sum(1, keepdim=True) - 2 * rb @ cb.T + c2
                codes[lo : lo + chunk, lvl] = d.argmin(1)
            r = r - cb[codes[:, lvl]]
    return codes.numpy()


def fit_kmeans_codebooks(export_dir: str, events, type_name: str, levels: int, iters: int = 5) -> None:
    """Replace ``type_name``'s codebooks in the export by residual k-means on its real objects.

    Level by level, as the training's k-means initialisation does: k-means on the residuals,
    then the residuals minus their nearest centre (the exact search of the export).
    """
    from safetensors.numpy import load_file

    from hep_tokenizers.codebook import _LevelSearch
    from hep_tokenizers.rvq.repair import kmeans
    from tests.export_fixtures import TENSORS_NAME, rewrite_tensors

    export = load_export(export_dir)
    codec = export[type_name]
    x, _, _ = export.transform.encode_objects(events, type_name)
    r = codec.latent(x)
    tensors = load_file(str(Path(export_dir) / TENSORS_NAME))
    gen = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    for lvl in range(levels):
        k = codec.codebook_sizes[lvl]
        cb = kmeans(torch.from_numpy(r), k, iters, gen).numpy().astype(np.float32)
        tensors[f"{type_name}.codebook.{lvl}"] = cb
        idx, _ = _LevelSearch(cb, codec.distance).gemm(r, torch.device("cpu"), 32, 2)
        r = r - cb[idx]
    rewrite_tensors(export_dir, tensors)
    print(f"  (k-means codebooks for {levels} levels on {len(x)} {type_name}: {time.perf_counter() - t0:.0f} s)")


def end_to_end_tokenize(codes: int, levels: int, dim: int, tokenizer: str | None = None) -> tuple[str, float] | None:
    """End-to-end ``hep-tok tokenize`` events/s on the embedded sample (a subprocess, timed).

    The tokenizer is a random export of the benchmark's size (every object type), saved with
    ``EventTokenizer.save_pretrained``; reading, encoding, assembling and writing shards count.
    """
    import json
    import subprocess
    import sys

    from hep_tokenizers.data import sample_path
    from hep_tokenizers.tokenization_event import EventTokenizer

    try:
        sample = sample_path()
    except FileNotFoundError:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        if tokenizer:
            EventTokenizer.from_pretrained(tokenizer).save_pretrained(Path(tmp) / "tok")
        else:
            export = make_random_export(Path(tmp) / "export", codebook_sizes=(codes,) * levels, codebook_dim=dim)
            EventTokenizer.from_export(export).save_pretrained(Path(tmp) / "tok")
        cmd = [sys.executable, "-m", "hep_tokenizers.cli", "tokenize", "--tokenizer", str(Path(tmp) / "tok"),
               "--out", str(Path(tmp) / "ds"), str(sample)]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        seconds = time.perf_counter() - t0
        summary = json.loads((Path(tmp) / "ds" / "summary.json").read_text())
    n = summary["events_tokenized"]
    return (f"hep-tok tokenize end to end ({n} events of the embedded sample, process start included)", n / seconds)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--objects", type=int, default=32768, help="objects for the project's encode (about what one 10,000-event chunk of hep-tok tokenize holds)")
    ap.add_argument("--baseline-objects", type=int, default=2048, help="objects for the (slow) baselines")
    ap.add_argument("--vqpt-batches", type=int, nargs="+", default=[256, 2048], help="batch sizes tried for vqpt")
    ap.add_argument("--codes", type=int, default=16384)
    ap.add_argument("--levels", type=int, default=4)
    ap.add_argument("--dim", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--tokenizer", help="a trained tokenizer folder (rvq_config.json + rvq.safetensors); "
                    "inputs are then the embedded sample's jets")
    ap.add_argument("--codebooks", choices=["gaussian", "kmeans"], default="kmeans",
                    help="random export's codebooks: k-means on the embedded sample's jets (the default: "
                    "what training's k-means init gives), or Gaussian (no structure: the worst case)")
    ap.add_argument("--skip-slow", action="store_true", help="skip the ivf and kdtree rows")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    per_event, per_event_src = mean_objects_per_event()
    if args.tokenizer:
        from hep_tokenizers import read_events
        from hep_tokenizers.data import sample_path

        export = load_export(args.tokenizer, workers=args.threads)
        events = read_events(sample_path())
        source = f"trained tokenizer {args.tokenizer}, real jets of the embedded sample"
    elif args.codebooks == "kmeans":
        from hep_tokenizers import read_events
        from hep_tokenizers.data import sample_path

        events = read_events(sample_path())
        with tempfile.TemporaryDirectory() as tmp:
            make_random_export(tmp, codebook_sizes=(args.codes,) * args.levels, codebook_dim=args.dim, events=events)
            fit_kmeans_codebooks(tmp, events, "jets", args.levels)
            export = load_export(tmp, workers=args.threads)
        source = "random encoder, k-means codebooks on the sample's jets, real jets"
    else:
        with tempfile.TemporaryDirectory() as tmp:
            events = make_events(max(4000, args.objects // 3), seed=1)
            make_random_export(tmp, codebook_sizes=(args.codes,) * args.levels, codebook_dim=args.dim, events=events)
            export = load_export(tmp, workers=args.threads)
        source = "random export, Gaussian codebooks, synthetic jets"
    codec = export["jets"]
    args.codes, args.levels, args.dim = codec.codebook_sizes[0], codec.n_levels, codec.codebook_dim
    x, _, _ = export.transform.encode_objects(events, "jets")
    reps = -(-args.objects // len(x))
    x = np.concatenate([x] * reps)[: args.objects]
    x = x + np.random.default_rng(0).normal(0, 1e-3, x.shape).astype(np.float32)  # distinct rows
    xb = x[: args.baseline_objects]

    print(f"{args.levels} levels x {args.codes} codes, dim {args.dim}, {args.threads} threads; {source}; "
          f"{per_event:.2f} objects/event from {per_event_src}")
    rows: list[tuple[str, int, float, float, float | None]] = []  # label, n, wall s, cpu s, agreement
    codec.search = "kernel"
    t0 = time.perf_counter()
    codec.encode(x[:256])  # builds the cell indexes (k-means per level; numba compiles or loads its cache)
    print(f"  (kernel index build for {args.levels} levels: {time.perf_counter() - t0:.1f} s)")
    t, ours = timed(lambda: codec.encode(x), args.repeat)
    rows.append(("hep_tokenizers encode (search='kernel' = CPU 'auto', compiled cell scan, exact)",
                 len(x), t, CPU_SECONDS[id(ours)], None))
    codec.search = "gemm"
    codec.encode(x[:256])
    t, ours_g = timed(lambda: codec.encode(x), args.repeat)
    rows.append((f"hep_tokenizers encode (search='gemm', blocked GEMM, exact; {codec.last_rechecked} re-checked)",
                 len(x), t, CPU_SECONDS[id(ours_g)], float((ours_g == ours).all(1).mean())))
    if not args.skip_slow:
        codec.search = "ivf"
        codec.encode(x[:256])  # builds the IVF indexes (k-means per level)
        t, ours_i = timed(lambda: codec.encode(x), args.repeat)
        rows.append((f"hep_tokenizers encode (search='ivf', torch IVF, exact; {codec.last_rechecked} re-checked)",
                     len(x), t, CPU_SECONDS[id(ours_i)], float((ours_i == ours).all(1).mean())))
        codec.search = "kdtree"
        codec.encode(x[:256])  # builds the trees
        t, ours_k = timed(lambda: codec.encode(x), 1)
        rows.append(("hep_tokenizers encode (search='kdtree', exact)", len(x), t, CPU_SECONDS[id(ours_k)],
                     float((ours_k == ours).all(1).mean())))
    codec.search = "auto"

    rvq = vqpt_rvq(codec)
    with torch.no_grad():
        rvq(latent32(codec, xb[:16])[None])  # warm-up

    def run_vqpt(batch: int) -> np.ndarray:
        out = []
        with torch.no_grad():
            for lo in range(0, len(xb), batch):
                _, idx, _ = rvq(latent32(codec, xb[lo : lo + batch])[None])
                out.append(idx[0].numpy())
        return np.concatenate(out)

    # the baselines are credited with their best batch size and torch thread count
    vq_runs, bf_runs = [], []
    for threads in sorted({args.threads, 1}, reverse=True):
        torch.set_num_threads(threads)
        for b in args.vqpt_batches:
            t, codes = timed(lambda b=b: run_vqpt(b), 1)
            vq_runs.append((f"batch {b}, {threads} thread(s)", t, codes))
        t, codes = timed(lambda: brute_force(codec, xb), 1)
        bf_runs.append((f"{threads} thread(s)", t, codes))
    torch.set_num_threads(args.threads)
    for name, runs in (("vector-quantize-pytorch eval forward", vq_runs), ("torch brute force", bf_runs)):
        print("  (" + name + ": " + "; ".join(f"{k}: {len(xb) / t:.0f} objects/s" for k, t, _ in runs) + ")")
    k, t, vq_codes = min(vq_runs, key=lambda v: v[1])
    rows.append((f"vector-quantize-pytorch ResidualVQ eval forward ({k})", len(xb), t,
                 CPU_SECONDS[id(vq_codes)], float((vq_codes == ours[: len(xb)]).all(1).mean())))
    k, t, bf = min(bf_runs, key=lambda v: v[1])
    rows.append((f"plain torch brute force (float32, chunks of 1024, {k})", len(xb), t, CPU_SECONDS[id(bf)],
                 float((bf == ours[: len(xb)]).all(1).mean())))
    e2e = end_to_end_tokenize(args.codes, args.levels, args.dim, args.tokenizer)

    base = next(n / w for label, n, w, _, _ in rows if label.startswith("vector-quantize"))
    base_cpu = next(c / n for label, n, _, c, _ in rows if label.startswith("vector-quantize"))
    print(f"{'method':<72} {'objects':>7} {'objects/s':>10} {'events/s':>9} {'x vqpt':>7} "
          f"{'CPU us/obj':>10} {'x vqpt':>7} {'same codes':>10}")
    for label, n, w, c, agree in rows:
        ops = n / w
        ag = "ref" if agree is None else f"{100 * agree:.2f}%"
        print(f"{label:<72} {n:>7} {ops:>10.0f} {ops / per_event:>9.0f} {ops / base:>7.1f} "
              f"{1e6 * c / n:>10.1f} {base_cpu / (c / n):>7.1f} {ag:>10}")
    if e2e is not None:
        label, eps = e2e
        print(f"{label:<72} {'':>7} {eps * per_event:>10.0f} {eps:>9.0f} {eps * per_event / base:>7.1f}")
    else:
        print("(end-to-end `hep-tok tokenize`: embedded sample not found, skipped)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
