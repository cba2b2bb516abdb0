#!/usr/bin/env python
"""Compare tokenizers downstream: tokenize the same files, pretrain with the same budget, fine-tune.

::

    python pretrain/compare.py --tokenizer TOK_A --tokenizer TOK_B --out DIR [files.root ...] \
        --max_steps 1000 [--finetune_steps 300 --label_column process --launcher "accelerate launch"]

For each tokenizer (``DIR/<name>/``): ``hep-tok tokenize`` -> ``dataset/``; ``run_mlm.py`` -> ``mlm/``;
the masked-object physics score (``pretrain/physics.py``) on the MLM run's held-out events;
``run_finetune.py`` from the pretrained model -> ``finetune_pretrained/`` and from scratch (same
architecture, same steps) -> ``finetune_scratch/``. Then one table (``DIR/comparison.md`` +
``DIR/comparison.json``) and one plot (``DIR/comparison.png``).

Columns: vocabulary size, mean sequence length, held-out masked-token loss / accuracy (not comparable
across vocabularies: a larger vocabulary has a larger chance-level loss), the tokenizer-independent
score (mean |ΔpT|/pT and ΔR of masked objects after decoding, against the original objects; "floor"
is the tokenizer's own reconstruction error, reached by a perfect masked-token predictor), and
event-classification accuracy / ROC AUC from the pretrained model and from scratch. Steps already done
(a finished ``metrics.json``) are reused when the command is rerun.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pretrain.common import write_json

HERE = Path(__file__).resolve().parent


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="compare.py", description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="*", help="ROOT files (default: the embedded sample, as hep-tok tokenize)")
    p.add_argument("--tokenizer", action="append", required=True, help="tokenizer folder (repeat, at least two)")
    p.add_argument("--name", action="append", default=None, help="short names for the tokenizers (same order)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--max_steps", type=int, default=1000, help="pretraining steps (same for every tokenizer)")
    p.add_argument("--finetune_steps", type=int, default=300, help="fine-tuning steps")
    p.add_argument("--per_device_train_batch_size", type=int, default=32)
    p.add_argument("--learning_rate", type=float, default=5e-4)
    p.add_argument("--finetune_learning_rate", type=float, default=2e-4)
    p.add_argument("--masking", default="token", choices=["token", "object"])
    p.add_argument("--label_column", default="process", help="classification labels (falls back to source_file when "
                   "the column has fewer than two labels)")
    p.add_argument("--model_args", default="", help="extra run_mlm.py model options, e.g. '--hidden_size 128'")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--eval_fraction", type=float, default=0.1)
    p.add_argument("--max_events", type=int, default=0, help="use only the first N events of each dataset")
    p.add_argument("--physics_events", type=int, default=2000, help="held-out events for the physics score")
    p.add_argument("--num_threads", type=int, default=0, help="torch threads per process (0: default)")
    p.add_argument("--launcher", default="", help="prefix for the training scripts, e.g. 'accelerate launch' "
                   "(default: the current python)")
    p.add_argument("--tokenize_args", default="", help="extra hep-tok tokenize options")
    return p


def _run(cmd: list[str], log: Path) -> None:
    print("$ " + shlex.join(cmd), flush=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as fh:
        fh.write("$ " + shlex.join(cmd) + "\n")
        fh.flush()
        r = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-25:])
        raise RuntimeError(f"command failed ({r.returncode}): {shlex.join(cmd)}\n--- last lines of {log} ---\n{tail}")


def _label_column(ds_dir: Path, wanted: str) -> str | None:
    from pretrain.data import load_token_dataset

    ds = load_token_dataset(ds_dir)
    for col in (wanted, "source_file"):
        if col in ds.column_names and len({v for v in ds[col] if v is not None}) >= 2:
            return col
    return None


def physics_score(run_dir: Path, tok_dir: str, ds_dir: Path, seed: int, eval_fraction: float, max_events: int,
                  physics_events: int) -> dict[str, Any]:
    """The masked-object physics score of a finished MLM run on its held-out events."""
    from pretrain.data import TokenStreams, load_token_dataset, split_indices
    from pretrain.modeling import EventBertForMaskedLM
    from pretrain.physics import masked_object_physics
    from pretrain.vocab import TokenizerInfo

    info = TokenizerInfo.load(tok_dir)
    ds = load_token_dataset(ds_dir)
    if max_events:
        ds = ds.select(range(min(max_events, len(ds))))
    streams = TokenStreams.from_dataset(ds, info)
    _, ev = split_indices(len(streams), eval_fraction, seed)
    model = EventBertForMaskedLM.from_pretrained(run_dir / "final")
    return masked_object_physics(model, streams.subset(ev), info, seed=seed, max_events=physics_events)


def compare(a: argparse.Namespace) -> dict[str, Any]:
    """Run the whole comparison; returns the rows written to ``comparison.json``."""
    if len(a.tokenizer) < 2:
        raise SystemExit("compare.py: give at least two --tokenizer folders")
    names = a.name or [Path(t).resolve().name for t in a.tokenizer]
    if len(names) != len(a.tokenizer) or len(set(names)) != len(names):
        raise SystemExit(f"compare.py: need one unique --name per tokenizer (got {names}); pass --name")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    launcher = shlex.split(a.launcher) if a.launcher else [sys.executable]
    common = ["--seed", str(a.seed), "--num_threads", str(a.num_threads)]
    if a.max_events:
        common += ["--max_events", str(a.max_events)]
    rows = []
    for name, tok in zip(names, a.tokenizer):
        d = out / name
        log = d / "log.txt"
        ds_dir = d / "dataset"
        if not (ds_dir / "state.json").exists():
            _run(["hep-tok", "tokenize", "--tokenizer", tok, "--out", str(ds_dir), *shlex.split(a.tokenize_args), *a.files], log)
        mlm = d / "mlm"
        if not (mlm / "metrics.json").exists():
            _run([*launcher, str(HERE / "run_mlm.py"), "--dataset", str(ds_dir), "--tokenizer", tok, "--output_dir", str(mlm),
                  "--max_steps", str(a.max_steps), "--per_device_train_batch_size", str(a.per_device_train_batch_size),
                  "--learning_rate", str(a.learning_rate), "--masking", a.masking, "--eval_fraction", str(a.eval_fraction),
                  "--resume_from_checkpoint", "latest", *shlex.split(a.model_args), *common], log)
        mlm_metrics = json.loads((mlm / "metrics.json").read_text())
        run_info = json.loads((mlm / "run_info.json").read_text())
        phys_file = d / "physics.json"
        if not phys_file.exists():
            write_json(phys_file, physics_score(mlm, tok, ds_dir, a.seed, a.eval_fraction, a.max_events, a.physics_events))
        phys = json.loads(phys_file.read_text())
        label = _label_column(ds_dir, a.label_column)
        ft: dict[str, Any] = {}
        for kind in ("pretrained", "scratch"):
            fdir = d / f"finetune_{kind}"
            if label is None:
                ft[kind] = {"skipped": f"no column with two or more labels ({a.label_column}, source_file)"}
                continue
            if not (fdir / "metrics.json").exists():
                _run([*launcher, str(HERE / "run_finetune.py"), "--dataset", str(ds_dir), "--tokenizer", tok,
                      "--output_dir", str(fdir), "--model_name_or_path", str(mlm), "--label_column", label,
                      "--max_steps", str(a.finetune_steps), "--learning_rate", str(a.finetune_learning_rate),
                      "--per_device_train_batch_size", str(a.per_device_train_batch_size),
                      *(["--from_scratch"] if kind == "scratch" else []), *common], log)
            ft[kind] = json.loads((fdir / "metrics.json").read_text())
        fin = mlm_metrics.get("final", {})
        obj = phys.get("objects", {}) if phys.get("available") else {}
        rows.append({
            "name": name,
            "tokenizer": str(tok),
            "vocab_size": run_info["tokenizer"]["vocab_size"],
            "n_levels": run_info["tokenizer"]["n_levels"],
            "n_events": run_info["n_events"],
            "mean_sequence_length": run_info["mean_sequence_length"],
            "pretrain_steps": mlm_metrics.get("step"),
            "masked_loss": fin.get("eval_loss"),
            "masked_accuracy": fin.get("eval_accuracy"),
            "masked_accuracy_by_level": fin.get("eval_accuracy_by_level"),
            "physics_reference": phys.get("reference"),
            "masked_obj_mean_rel_pt": obj.get("mean_rel_pt"),
            "masked_obj_median_rel_pt": obj.get("median_rel_pt"),
            "masked_obj_mean_dr": obj.get("mean_dr"),
            "floor_mean_rel_pt": obj.get("floor_mean_rel_pt"),
            "floor_mean_dr": obj.get("floor_mean_dr"),
            "n_masked_objects": obj.get("n_objects"),
            "label_column": label,
            **{f"clf_{k}_{m}": ft[k].get(m) for k in ("pretrained", "scratch") for m in ("accuracy", "roc_auc")},
            "clf_chance_accuracy": ft["scratch"].get("chance_accuracy"),
            "n_clf_eval": ft["scratch"].get("n_eval"),
        })
    cfg = {k: v for k, v in vars(a).items()}
    write_json(out / "comparison.json", {"rows": rows, "settings": cfg})
    (out / "comparison.md").write_text(markdown_table(rows, cfg))
    plot(rows, out / "comparison.png")
    return {"rows": rows}


def _fmt(v: Any, nd: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


COLUMNS = [
    ("name", "tokenizer"), ("vocab_size", "vocab"), ("mean_sequence_length", "mean len"),
    ("masked_loss", "masked loss"), ("masked_accuracy", "masked acc"),
    ("masked_obj_mean_rel_pt", "masked obj \\|ΔpT\\|/pT"), ("masked_obj_mean_dr", "masked obj ΔR"),
    ("floor_mean_rel_pt", "floor \\|ΔpT\\|/pT"), ("floor_mean_dr", "floor ΔR"),
    ("clf_pretrained_accuracy", "clf acc (pretrained)"), ("clf_pretrained_roc_auc", "AUC (pretrained)"),
    ("clf_scratch_accuracy", "clf acc (scratch)"), ("clf_scratch_roc_auc", "AUC (scratch)"),
]


def markdown_table(rows: list[dict[str, Any]], cfg: dict[str, Any]) -> str:
    head = "| " + " | ".join(h for _, h in COLUMNS) + " |\n|" + "---|" * len(COLUMNS) + "\n"
    body = "".join("| " + " | ".join(_fmt(r.get(k), 1 if k == "mean_sequence_length" else 3) for k, _ in COLUMNS) + " |\n" for r in rows)
    notes = (
        f"\nPretraining: {cfg['max_steps']} steps, global batch {cfg['per_device_train_batch_size']} x processes, "
        f"{cfg['masking']} masking; fine-tuning {cfg['finetune_steps']} steps on `{rows[0].get('label_column')}` labels "
        f"(chance accuracy {_fmt(rows[0].get('clf_chance_accuracy'))}, {rows[0].get('n_clf_eval')} held-out events).\n"
        "Masked loss/accuracy depend on the vocabulary and do not compare across tokenizers; the masked-object "
        f"|ΔpT|/pT and ΔR (reference: {rows[0].get('physics_reference')} objects) do. 'floor' = error of the tokenizer's "
        "own reconstruction of the true tokens (what a perfect masked-token predictor would reach).\n"
    )
    return "# Tokenizer comparison\n\n" + head + body + notes


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Four panels: masked loss, masked-object |ΔpT|/pT (with floor), classification AUC, mean length."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = [r["name"] for r in rows]
    x = np.arange(len(rows))
    val = lambda k: [np.nan if r.get(k) is None else r[k] for r in rows]  # noqa: E731
    fig, ax = plt.subplots(1, 4, figsize=(15, 3.6))
    ax[0].bar(x, val("masked_loss"))
    ax[0].set_title("held-out masked-token loss")
    ax[1].bar(x - 0.2, val("masked_obj_mean_rel_pt"), 0.4, label="model")
    ax[1].bar(x + 0.2, val("floor_mean_rel_pt"), 0.4, label="tokenizer floor")
    ax[1].set_title("masked objects: mean |ΔpT|/pT")
    ax[1].legend(fontsize=8)
    ax[2].bar(x - 0.2, val("clf_pretrained_roc_auc"), 0.4, label="pretrained")
    ax[2].bar(x + 0.2, val("clf_scratch_roc_auc"), 0.4, label="scratch")
    ax[2].set_ylim(0.4, 1.0)
    ax[2].set_title("classification ROC AUC")
    ax[2].legend(fontsize=8)
    ax[3].bar(x, val("mean_sequence_length"))
    ax[3].set_title("mean sequence length")
    for a_ in ax:
        a_.set_xticks(x, names, rotation=20, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    compare(a)
    print((Path(a.out) / "comparison.md").read_text())
    print(f"table: {Path(a.out) / 'comparison.md'}  plot: {Path(a.out) / 'comparison.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
