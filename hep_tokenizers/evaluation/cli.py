"""`hep-tok evaluate`: reconstruction, physics after decoding, codebook usage and sequence report.

    hep-tok evaluate --tokenizer DIR [--tokenizer DIR2 ...] --out REPORT_DIR [files...] [--max_events N]

Each ``DIR`` is a saved tokenizer (``save_pretrained`` output, with ``tokenizer_config.json``)
or a raw RVQ export (``rvq_config.json`` + ``rvq.safetensors``). Without files, the embedded
sample (``hep_tokenizers.data.sample_path()``) is used. Writes ``REPORT_DIR/metrics.json``,
PNG plots, ``report.md`` and a self-contained ``report.html``.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np

from . import plots as P
from .physics import OBSERVABLES, physics_observables
from .report import write_report
from .runner import TokenizerRun, bias_rows, compare_events, mean_normalised_bias

log = logging.getLogger("hep_tokenizers.evaluation")


def load_tokenizer(path: str | Path) -> Any:
    """``EventTokenizer`` from a saved tokenizer directory or a raw RVQ export directory."""
    from ..tokenization_event import EventTokenizer

    p = Path(path)
    if not p.is_dir():
        raise FileNotFoundError(f"tokenizer directory {p} does not exist")
    if (p / "tokenizer_config.json").exists():
        return EventTokenizer.from_pretrained(str(p))
    if (p / "rvq_config.json").exists():
        return EventTokenizer.from_export(str(p))
    raise FileNotFoundError(f"{p} holds neither tokenizer_config.json (saved tokenizer) nor rvq_config.json (RVQ export)")


def _unique_names(paths: list[str], names: list[str] | None) -> list[str]:
    if names:
        if len(names) != len(paths):
            raise SystemExit(f"hep-tok evaluate: {len(names)} --name for {len(paths)} --tokenizer")
        return names
    out: list[str] = []
    for p in paths:
        base = Path(p).resolve().name or "tokenizer"
        name, k = base, 2
        while name in out:
            name, k = f"{base}_{k}", k + 1
        out.append(name)
    return out


def _read_chunks(path: str, max_events: int | None, chunk_size: int, fmt: str | None, stats: Any):
    from ..io import iter_events

    seen = 0
    for chunk in iter_events([path], step_size=chunk_size, format=fmt, stats=stats):
        if max_events is not None:
            chunk = chunk[: max(0, max_events - seen)]
        if len(chunk) == 0:
            break
        seen += len(chunk)
        yield chunk
        if max_events is not None and seen >= max_events:
            break


def evaluate(
    tokenizers: dict[str, Any],
    tokenizer_paths: dict[str, str],
    files: list[str],
    out_dir: Path,
    max_events: int | None = None,
    max_length: int = 128,
    chunk_size: int = 20000,
    fmt: str | None = None,
    html: bool = True,
    command: str = "",
) -> dict[str, Any]:
    """Run every tokenizer on ``files`` and write the report; returns the metrics dict."""
    from tqdm.auto import tqdm

    from ..io.common import ReadStats

    t0 = time.time()
    runs = {name: TokenizerRun(name, tok, max_length) for name, tok in tokenizers.items()}
    originals: list[ak.Array] = []
    read_stats: dict[str, str] = {}
    for path in files:
        stats = ReadStats()
        for chunk in tqdm(_read_chunks(path, max_events, chunk_size, fmt, stats), desc=f"evaluate {Path(path).name}", unit="chunk"):
            originals.append(chunk)
            for run in runs.values():
                run.process(chunk, path)
        read_stats[path] = stats.summary() if (stats.removed or stats.masked or stats.missing) else ""
    if not originals:
        raise SystemExit(f"hep-tok evaluate: no events read from {files}")
    original = ak.concatenate(originals) if len(originals) > 1 else originals[0]
    obs_original = physics_observables(original)

    out_dir.mkdir(parents=True, exist_ok=True)
    plots: dict[str, list[str]] = {"bias": [], "physics": [], "codebooks": [], "sequences": []}
    metrics: dict[str, Any] = {
        "command": command,
        "files": files,
        "n_events": len(original),
        "max_length": max_length,
        "read_stats": read_stats,
        "tokenizers": {},
    }
    comparisons = {}
    all_rows: list[dict[str, Any]] = []
    for name, run in runs.items():
        cmp_ = compare_events(original, run.decoded_events(), run.tok.transform, run.schema, obs_original)
        comparisons[name] = cmp_
        rows = bias_rows(cmp_.reconstruction, name)
        all_rows += rows
        per_type = {t: v["worst"] for t, v in cmp_.reconstruction.items() if "worst" in v and v.get("n_matched")}
        metrics["tokenizers"][name] = {
            "path": tokenizer_paths[name],
            "vocab_size": int(run.layout.vocab_size),
            "codebook_sizes": run.sizes,
            "reconstruction": cmp_.reconstruction,
            "physics": cmp_.physics,
            "codebooks": run.codebook_metrics(),
            "sequences": run.sequence_metrics(),
            "headline": {
                "per_type": per_type,
                "mean_normalised_bias": mean_normalised_bias(cmp_.reconstruction),
                "mass_peak_shifts": {k: m.get("peak_shift") for k, m in cmp_.physics.items() if "peak_shift" in m},
            },
        }

    # ---------------------------------------------------------------- plots
    plots["bias"].append(P.bias_summary(all_rows, out_dir / "bias_summary.png").name)
    first = next(iter(comparisons.values()))
    for tname in first.residuals:
        grid = {f: {n: c.residuals[tname][f] for n, c in comparisons.items()} for f in first.residuals[tname]}
        if any(np.isfinite(v).any() for d in grid.values() for v in d.values()):
            plots["bias"].append(P.residual_grid(grid, out_dir / f"residuals_{tname}.png", f"{tname}: decoded - original").name)
    for oname, spec in OBSERVABLES.items():
        if not np.isfinite(obs_original[oname]).any():
            continue
        unit = f" [{spec.unit}]" if spec.unit else ""
        dec = {n: c.observables_decoded[oname] for n, c in comparisons.items()}
        plots["physics"].append(
            P.compare_hist(obs_original[oname], dec, out_dir / f"physics_{oname}.png", spec.label + unit, spec.range).name
        )
    for name, run in runs.items():
        plots["codebooks"].append(P.codebook_usage(run.usage_curves(), out_dir / f"codebook_usage_{name}.png", f"code usage: {name}").name)
    lengths = {}
    for name, run in runs.items():
        for file, s in run.files.items():
            lengths[f"{name}: {Path(file).name}"] = np.concatenate(s.untruncated)
    plots["sequences"].append(P.sequence_lengths(lengths, max_length, out_dir / "sequence_lengths.png", "sequence lengths").name)

    metrics["elapsed_s"] = round(time.time() - t0, 2)
    metrics["plots"] = [p for v in plots.values() for p in v]
    paths = write_report(metrics, out_dir, plots, html_page=html)
    for k, p in paths.items():
        print(f"hep-tok evaluate: wrote {p}")
    return metrics


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hep-tok evaluate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("files", nargs="*", help="ROOT files (default: the embedded sample)")
    parser.add_argument("--tokenizer", action="append", required=True, help="tokenizer or RVQ export directory (repeatable)")
    parser.add_argument("--name", action="append", help="display name per --tokenizer (default: directory name)")
    parser.add_argument("--out", type=Path, required=True, help="report directory")
    parser.add_argument("--max_events", type=int, default=None, help="events per file (default: all)")
    parser.add_argument("--max_length", type=int, default=128, help="truncation length (default: 128)")
    parser.add_argument("--chunk_size", type=int, default=20000, help="events per chunk (default: 20000)")
    parser.add_argument("--format", default=None, help="input format (default: detected)")
    parser.add_argument("--no_html", action="store_true", help="skip the self-contained HTML page")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``hep-tok evaluate``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    files = [str(f) for f in args.files]
    if not files:
        from ..data import sample_path

        files = [str(sample_path())]
    for f in files:
        if not Path(f).exists():
            print(f"hep-tok evaluate: input file {f} does not exist", file=sys.stderr)
            return 2
    if args.max_events is not None and args.max_events <= 0:
        print("hep-tok evaluate: --max_events must be positive", file=sys.stderr)
        return 2
    names = _unique_names(args.tokenizer, args.name)
    toks = {n: load_tokenizer(p) for n, p in zip(names, args.tokenizer)}
    evaluate(
        toks,
        dict(zip(names, args.tokenizer)),
        files,
        args.out,
        max_events=args.max_events,
        max_length=args.max_length,
        chunk_size=args.chunk_size,
        fmt=args.format,
        html=not args.no_html,
        command="hep-tok evaluate " + " ".join(shlex.quote(a) for a in argv),
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
