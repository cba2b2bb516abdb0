"""`hep-tok study`: train a matrix of tokenizer configs on the same data and steps, compare them.

Writes ``DIR/<variant>/`` (each a full training output), ``DIR/study.json`` (every summary:
per-level usage and perplexity, reconstruction per feature, total effective bits per object) and
``DIR/study.md`` (the comparison table).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .config import TokenizerConfig, load_config

#: Variants as dotted-key overrides of the base config. ``{K}`` in a list is the base size.
VARIANTS: dict[str, dict[str, Any]] = {
    "plain": {"quantizer.init": "random", "quantizer.warmup_steps": 0, "quantizer.reset_every": 0},
    "kmeans": {"quantizer.init": "kmeans", "quantizer.warmup_steps": 0, "quantizer.reset_every": 0},
    "kmeans_warmup": {"quantizer.init": "kmeans", "quantizer.reset_every": 0},
    "kmeans_warmup_gentle_reset": {"quantizer.init": "kmeans"},
    "kmeans_warmup_hard_reset": {
        "quantizer.init": "kmeans",
        "quantizer.reset_every": 1,
        "quantizer.reset_threshold": 4.0,
        "quantizer.reset_max_fraction": 1.0,
    },
    "dim16": {"quantizer.codebook_dim": 16},
    "cosine": {"quantizer.distance": "cosine", "quantizer.kind": "rvq_custom"},
    "custom_euclidean": {"quantizer.kind": "rvq_custom"},
    "learnable_codebook": {"quantizer.codebook_update": "learnable"},
    "small_q0": {"quantizer.codebook_sizes": "SMALL_Q0"},
    "discrete_weights_x3": {"loss.kind_weights": {"continuous": 1.0, "tagger": 3.0, "binary": 3.0, "categorical": 3.0}},
}

MATRICES: dict[str, dict[str, Any]] = {
    "tiny": {"config": "tiny", "variants": list(VARIANTS)},
    "full": {"config": "default", "variants": list(VARIANTS)},
    "reset": {"config": "default", "variants": ["plain", "kmeans_warmup", "kmeans_warmup_gentle_reset", "kmeans_warmup_hard_reset"]},
}


def variant_config(base: TokenizerConfig, name: str, max_steps: int | None, overrides: dict[str, Any] | None = None) -> TokenizerConfig:
    """``base`` with the common ``overrides`` (``--set``), the common step count, then variant ``name``.

    The variant's own overrides win (``plain`` stays without warm-up or reset whatever ``--set``
    says); with ``max_steps``, evaluation every ``max_steps // 4`` and one save at the end unless
    ``overrides`` set ``train.eval_steps`` / ``train.save_steps``.
    """
    if name not in VARIANTS:
        raise KeyError(f"unknown study variant {name!r}; known: {sorted(VARIANTS)}")
    overrides = dict(overrides or {})
    if overrides:
        base_name = base.name
        base = base.with_overrides(overrides)
        base.name = base_name
    over: dict[str, Any] = {}
    if max_steps is not None:
        over["train.max_steps"] = max_steps
        if "train.eval_steps" not in overrides:
            over["train.eval_steps"] = max(1, max_steps // 4)
        if "train.save_steps" not in overrides:
            over["train.save_steps"] = max_steps
        if base.quantizer.warmup_steps >= max_steps:
            over["quantizer.warmup_steps"] = max_steps // 5
    over.update(VARIANTS[name])
    if over.get("quantizer.codebook_sizes") == "SMALL_Q0":
        sizes = base.quantizer.sizes()
        over["quantizer.codebook_sizes"] = [max(2, sizes[0] // 16)] + sizes[1:]
    cfg = base.with_overrides(over)
    cfg.name = f"{base.name}/{name}"
    return cfg


def summarise(name: str, s: dict[str, Any]) -> dict[str, Any]:
    """The comparison row(s) of one trained variant."""
    rows = {}
    for t, h in s["health_final"].items():
        rec = s["reconstruction"].get(t, {})
        cont = [v for v in rec.values() if "mae" in v]
        acc = [v["accuracy"] for v in rec.values() if "accuracy" in v]
        rows[t] = {
            "used_fraction": [l["used_fraction"] for l in h["levels"]],
            "perplexity": [l["perplexity"] for l in h["levels"]],
            "total_effective_bits": h["total_effective_bits"],
            "mean_mae": float(np.mean([v["mae"] for v in cont])) if cont else None,
            "mean_abs_bias": float(np.mean([abs(v["bias"]) for v in cont])) if cont else None,
            "mean_accuracy": float(np.mean(acc)) if acc else None,
            "reconstruction": rec,
        }
    bits = [r["total_effective_bits"] for r in rows.values()]
    return {"variant": name, "types": rows, "mean_total_effective_bits": float(np.mean(bits)) if bits else 0.0, "seconds": s["seconds"]}


def markdown_table(results: list[dict[str, Any]]) -> str:
    """One row per variant and object type."""
    lines = [
        "| variant | type | used q0..qL (%) | perplexity q0..qL | bits/object | mean MAE (std. units) | mean abs bias | mean accuracy |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    fmt = lambda v, p=3: "-" if v is None else f"{v:.{p}f}"  # noqa: E731
    for r in results:
        for t, row in r["types"].items():
            lines.append(
                f"| {r['variant']} | {t} | {' / '.join(f'{100 * u:.1f}' for u in row['used_fraction'])} | "
                f"{' / '.join(f'{p:.0f}' for p in row['perplexity'])} | {row['total_effective_bits']:.2f} | "
                f"{fmt(row['mean_mae'])} | {fmt(row['mean_abs_bias'], 4)} | {fmt(row['mean_accuracy'])} |"
            )
    lines.append("")
    lines.append("| variant | mean bits/object over types | seconds |")
    lines.append("| --- | --- | --- |")
    for r in results:
        lines.append(f"| {r['variant']} | {r['mean_total_effective_bits']:.2f} | {r['seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def _write_study(out_dir: Path, base_name: str, max_steps: int | None, data_info: dict | None, results: list[dict[str, Any]], overrides: dict[str, Any] | None = None) -> None:
    meta = {"base": base_name, "max_steps": max_steps, "overrides": overrides or {}, "data": data_info, "results": results}
    (out_dir / "study.json").write_text(json.dumps(meta, indent=1) + "\n")
    (out_dir / "study.md").write_text(f"# Tokenizer study ({base_name}, {max_steps} steps)\n\n" + markdown_table(results))


def run_study(
    events,
    out_dir: str | Path,
    base: TokenizerConfig,
    variants: list[str],
    max_steps: int | None,
    progress: bool = True,
    data_info: dict | None = None,
    overrides: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Train every variant on ``events`` into ``out_dir/<variant>``; write study.json/study.md."""
    from .training import train_tokenizer

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for name in variants:
        cfg = variant_config(base, name, max_steps, overrides)
        print(f"[study] {name}", file=sys.stderr)
        s = train_tokenizer(cfg, events, out_dir / name, resume=True, progress=progress, data_info=data_info)
        results.append(summarise(name, s))
        _write_study(out_dir, base.name, max_steps, data_info, results, overrides)
    return results


def merge_studies(dirs: list[str | Path], out_dir: str | Path, order: list[str] | None = None) -> list[dict[str, Any]]:
    """Combine the ``study.json`` of runs split over several processes into one table in ``out_dir``.

    The parts must share base config, steps, ``--set`` overrides and data; a variant in two
    parts is an error. Rows follow ``order`` (e.g. the matrix's variant order) where given.
    """
    parts = [json.loads((Path(d) / "study.json").read_text()) for d in dirs]
    if not parts:
        raise ValueError("nothing to merge")
    first = parts[0]
    for d, p in zip(dirs, parts):
        for key in ("base", "max_steps", "overrides", "data"):
            if p.get(key) != first.get(key):
                raise ValueError(f"cannot merge {d}: {key} {p.get(key)!r} differs from {first.get(key)!r} ({dirs[0]})")
    results = [r for p in parts for r in p["results"]]
    names = [r["variant"] for r in results]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"variant(s) {dup} appear in more than one part")
    if order:
        rank = {n: i for i, n in enumerate(order)}
        results.sort(key=lambda r: rank.get(r["variant"], len(rank)))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_study(out_dir, first["base"], first["max_steps"], first["data"], results, first.get("overrides"))
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="hep-tok study", description="Train a matrix of tokenizer configs and compare codebook health.")
    p.add_argument("files", nargs="*", help="ROOT files (default: the embedded sample)")
    p.add_argument("--files", dest="files_opt", nargs="+", default=[], help="ROOT files (alternative to positional)")
    p.add_argument("--out", required=True)
    p.add_argument("--matrix", default="tiny", choices=sorted(MATRICES))
    p.add_argument("--config", help="base config (default: the matrix's)")
    p.add_argument("--variants", help="comma-separated subset of the matrix's variants")
    p.add_argument("--max_steps", type=int)
    p.add_argument("--max_events", type=int)
    p.add_argument("--synthetic", type=int, metavar="N", help="use N synthetic events (development only)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override for every variant's base config, e.g. train.per_device_train_batch_size=256 (YAML value; the variant's own settings win)")
    p.add_argument("--merge", nargs="+", metavar="DIR", help="combine the study.json of these study dirs into --out (no training)")
    p.add_argument("--no_progress", action="store_true")
    args = p.parse_args(argv)
    matrix = MATRICES[args.matrix]
    if args.merge:
        results = merge_studies(args.merge, args.out, order=list(VARIANTS))
        print(markdown_table(results))
        return 0
    import yaml

    overrides: dict[str, Any] = {}
    for item in args.set:
        if "=" not in item:
            p.error(f"--set expects KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        overrides[k] = yaml.safe_load(v)
    base = load_config(args.config or matrix["config"])
    variants = args.variants.split(",") if args.variants else matrix["variants"]
    for v in variants:
        if v not in VARIANTS:
            p.error(f"unknown variant {v!r}; known: {sorted(VARIANTS)}")
    if args.synthetic:
        from .training import synthetic_events

        events, info = synthetic_events(args.synthetic, base.train.seed), {"source": f"synthetic:{args.synthetic}"}
    else:
        from .training import load_events

        events, files = load_events(args.files + args.files_opt, args.max_events)
        info = {"files": files, "events": int(len(events))}
    results = run_study(events, args.out, base, variants, args.max_steps, progress=not args.no_progress, data_info=info, overrides=overrides)
    print(markdown_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
