"""`hep-tok demo --out DIR`: the whole chain on the embedded sample.

Steps (each the same command a user would type, run in this process or a child process):

1. ``hep-tok inspect``                         -> DIR/inspect.json
2. ``hep-tok train-tokenizer --config tiny``   -> DIR/tokenizer
3. ``hep-tok tokenize``                        -> DIR/dataset
4. ``python pretrain/run_mlm.py``              -> DIR/mlm
5. ``python pretrain/run_finetune.py``         -> DIR/finetune
6. ``hep-tok evaluate``                        -> DIR/report

A step whose output already exists and is complete is skipped, so an interrupted demo resumes.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import subprocess
import sys
import time
from pathlib import Path

from .data import sample_path

REPO_ROOT = Path(__file__).resolve().parents[1]


def _run_cli(args: list[str]) -> None:
    from .cli import main as cli_main

    code = cli_main(args)
    if code:
        raise SystemExit(f"hep-tok demo: step `hep-tok {' '.join(args)}` failed with exit code {code}")


def _run_script(script: str, args: list[str]) -> None:
    path = REPO_ROOT / "pretrain" / script
    if not path.exists():
        raise SystemExit(
            f"hep-tok demo: {path} not found; the demo needs a source checkout (pip install -e .) "
            "because pretrain/ scripts are launched with `accelerate launch`, not imported"
        )
    cmd = [sys.executable, str(path), *args]
    result = subprocess.run(cmd)
    if result.returncode:
        raise SystemExit(f"hep-tok demo: step `{' '.join(cmd)}` failed with exit code {result.returncode}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hep-tok demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("demo_out"), help="output directory (default: demo_out)")
    parser.add_argument("--config", default="tiny", help="tokenizer config name or path (default: tiny)")
    parser.add_argument("--mlm_steps", type=int, default=200, help="pretraining steps (default: 200)")
    parser.add_argument("--finetune_steps", type=int, default=150, help="fine-tuning steps (default: 150)")
    parser.add_argument("--num_threads", type=int, default=1,
                        help="torch threads for pretraining and fine-tuning (default 1: small models gain nothing from more)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    sample = str(sample_path())
    t0 = time.time()
    timings: dict[str, float] = {}

    def step(name: str, done: Path, fn, *fn_args) -> None:
        start = time.time()
        if done.exists():
            print(f"[demo] {name}: already done ({done}), skipping")
        else:
            print(f"[demo] {name} ...", flush=True)
            fn(*fn_args)
        timings[name] = round(time.time() - start, 1)

    def inspect() -> None:
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            _run_cli(["inspect", sample, "--json"])
        (out / "inspect.json").write_text(buf.getvalue())
        print(buf.getvalue())

    tok_dir, ds_dir, mlm_dir, ft_dir, report_dir = (out / n for n in ("tokenizer", "dataset", "mlm", "finetune", "report"))
    step("inspect", out / "inspect.json", inspect)
    step(
        "train tokenizer",
        tok_dir / "tokenizer_config.json",
        _run_cli,
        ["train-tokenizer", "--config", args.config, "--out", str(tok_dir), "--seed", str(args.seed), sample],
    )
    step("tokenize", ds_dir / "summary.json", _run_cli, ["tokenize", "--tokenizer", str(tok_dir), "--out", str(ds_dir), sample])
    step(
        "pretrain (MLM)",
        mlm_dir / "final",
        _run_script,
        "run_mlm.py",
        ["--dataset", str(ds_dir), "--tokenizer", str(tok_dir), "--output_dir", str(mlm_dir),
         "--max_steps", str(args.mlm_steps), "--seed", str(args.seed), "--num_threads", str(args.num_threads)],
    )
    step(
        "fine-tune (process classification)",
        ft_dir / "metrics.json",
        _run_script,
        "run_finetune.py",
        ["--dataset", str(ds_dir), "--tokenizer", str(tok_dir), "--model", str(mlm_dir / "final"),
         "--output_dir", str(ft_dir), "--max_steps", str(args.finetune_steps), "--seed", str(args.seed),
         "--num_threads", str(args.num_threads)],
    )
    step("evaluate", report_dir / "report.md", _run_cli, ["evaluate", "--tokenizer", str(tok_dir), "--out", str(report_dir), sample])

    (out / "demo_timings.json").write_text(json.dumps(timings, indent=2))
    print(f"[demo] done in {time.time() - t0:.0f} s. Report: {report_dir / 'report.md'}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
