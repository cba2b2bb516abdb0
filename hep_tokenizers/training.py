"""`hep-tok train-tokenizer`: train the per-type RVQ autoencoders, monitor codebook health, export.

Runs single-process or under ``accelerate launch`` (CPU: ``ACCELERATE_USE_CPU=true accelerate
launch --multi_gpu --num_processes 2 -m hep_tokenizers.training ...``). Every rank loads the same
events and the same split, draws its own batches (seed + rank), and gradients are averaged across
ranks after each backward pass. Codebooks stay identical: EMA statistics are all-reduced by the
quantizers (``sync_codebook``), and k-means init / dead-code resets are computed on rank 0 and
broadcast.

Output directory: ``rvq_config.json`` + ``rvq.safetensors`` (the export), ``training_config.json``,
``health.json`` + ``health_*.png``, ``training_summary.json``, ``train_log.jsonl`` and
``checkpoints/checkpoint.pt`` (atomic; a rerun resumes from it unless ``--no_resume``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import torch

from .config import TokenizerConfig, load_config, save_config
from .features import FeatureTransform
from .rvq.export import dedupe_codebooks, export_model
from .rvq.health import HealthMonitor, codes_health
from .rvq.losses import head_values
from .rvq.model import TokenizerModel
from .rvq.repair import UsageWindow, broadcast_quantizer, kmeans_init, reset_dead_codes
from .schema import Kind

CHECKPOINT = "checkpoint.pt"


# ----------------------------------------------------------------------------- data
def load_events(files: list[str], max_events: int | None = None) -> tuple[ak.Array, list[str]]:
    """Read and concatenate events from ROOT files (the embedded sample when ``files`` is empty)."""
    if not files:
        from .data import sample_path

        files = [str(sample_path())]
    from .io import read_events  # the readers (issue 2)

    parts = []
    for f in files:
        if not Path(f).exists():
            raise FileNotFoundError(f"input file {f} does not exist")
        parts.append(read_events(f))
    events = parts[0] if len(parts) == 1 else ak.concatenate(parts)
    if max_events is not None:
        events = events[:max_events]
    return events, [str(f) for f in files]


def split_events(n: int, cfg: TokenizerConfig) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic (seeded) train/validation split of ``n`` events."""
    if n < 2:
        raise ValueError(f"need at least 2 events to split into training and validation, got {n}")
    n_val = max(int(round(cfg.data.validation_fraction * n)), min(cfg.data.validation_min_events, n // 2), 1)
    n_val = min(n_val, n - 1)
    perm = np.random.default_rng(cfg.train.seed).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


@dataclass
class TypeData:
    x: torch.Tensor
    y: torch.Tensor


@dataclass
class Prepared:
    transform: FeatureTransform
    train: dict[str, TypeData]
    val: dict[str, TypeData]
    n_train_events: int
    n_val_events: int
    info: dict[str, Any] = field(default_factory=dict)


def prepare_data(events: ak.Array, cfg: TokenizerConfig) -> Prepared:
    """Split events, fit the feature transform on the training part, flatten objects per type."""
    tr, va = split_events(len(events), cfg)
    ev_tr, ev_va = events[tr], events[va]
    transform = FeatureTransform.fit(ev_tr)
    train, val = {}, {}
    for t in transform.schema.all_types:
        for src, dst in ((ev_tr, train), (ev_va, val)):
            x, y, _ = transform.encode_objects(src, t.name)
            dst[t.name] = TypeData(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y)))
    info = {
        "train_objects": {t: int(len(d.x)) for t, d in train.items()},
        "validation_objects": {t: int(len(d.x)) for t, d in val.items()},
        "missing_target_values": {t: int(torch.isnan(d.y).sum()) for t, d in train.items()},
    }
    return Prepared(transform, train, val, len(tr), len(va), info)


# ----------------------------------------------------------------------------- helpers
def _lr_factor(step: int, cfg: TokenizerConfig) -> float:
    w = cfg.train.lr_warmup_steps
    if step < w:
        return (step + 1) / w
    frac = (step - w) / max(1, cfg.train.max_steps - w)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))


def _world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


@torch.no_grad()
def held_out_codes(model: TokenizerModel, data: dict[str, TypeData]) -> dict[str, np.ndarray]:
    """Exact codes of the held-out objects of every type."""
    was = model.training
    model.eval()
    out = {t: model[t].encode_codes(d.x).numpy() if len(d.x) else np.zeros((0, model[t].quantizer.n_levels), np.int64) for t, d in data.items()}
    model.train(was)
    return out


@torch.no_grad()
def reconstruction_metrics(model: TokenizerModel, data: dict[str, TypeData]) -> dict[str, dict[str, dict[str, float]]]:
    """Per type and feature on held-out objects, after quantization (head space).

    continuous: ``mae`` and ``bias`` (mean signed error) in standardised units; tagger: ``mae`` of
    the score; binary and categorical: ``accuracy``. NaN targets are skipped (``n`` counts used ones).
    """
    out: dict[str, dict[str, dict[str, float]]] = {}
    for t, d in data.items():
        if len(d.x) == 0:
            continue
        m = model[t]
        codes = m.encode_codes(d.x)
        pred = m.decode_codes(codes)
        res = {}
        for j, h in enumerate(m.heads):
            y, p = d.y[:, j], pred[:, j]
            ok = torch.isfinite(y)
            if not bool(ok.any()):
                res[h.feature] = {"n": 0}
                continue
            y, p = y[ok].double(), p[ok].double()
            if h.kind is Kind.CONTINUOUS:
                res[h.feature] = {"n": int(ok.sum()), "mae": float((p - y).abs().mean()), "bias": float((p - y).mean())}
            elif h.kind is Kind.TAGGER:
                res[h.feature] = {"n": int(ok.sum()), "mae": float((p - y).abs().mean()), "bias": float((p - y).mean())}
            elif h.kind is Kind.BINARY:
                res[h.feature] = {"n": int(ok.sum()), "accuracy": float(((p > 0.5).double() == y).double().mean())}
            else:
                res[h.feature] = {"n": int(ok.sum()), "accuracy": float((p == y).double().mean())}
        out[t] = res
    return out


def _held_out_subset(data: dict[str, TypeData], cfg: TokenizerConfig) -> dict[str, TypeData]:
    cap = int(max(20.0, cfg.data.health_objects_per_code * 4) * max(cfg.quantizer.sizes()))
    return {t: TypeData(d.x[:cap], d.y[:cap]) for t, d in data.items()}


# ----------------------------------------------------------------------------- training
def train_tokenizer(
    cfg: TokenizerConfig,
    events: ak.Array,
    out_dir: str | Path,
    resume: bool = True,
    progress: bool = True,
    stop_after: int | None = None,
    data_info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train, monitor health, checkpoint, export into ``out_dir``; returns the summary dict.

    ``stop_after`` stops (after checkpointing) once that many steps are done, as if interrupted.
    """
    from tqdm.auto import tqdm

    cfg.validate()
    out_dir = Path(out_dir)
    ck_dir = out_dir / "checkpoints"
    rank, world = _world()
    main = rank == 0
    if main:
        ck_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out_dir / "training_config.json")
    t0 = time.time()
    prep = prepare_data(events, cfg)
    torch.manual_seed(cfg.train.seed)
    model = TokenizerModel(prep.transform, cfg, sync_codebook=world > 1)
    if world > 1:
        for tensor in list(model.parameters()) + list(model.buffers()):
            torch.distributed.broadcast(tensor.data, src=0)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.train.learning_rate, weight_decay=cfg.train.weight_decay)
    gen = torch.Generator().manual_seed(cfg.train.seed * 1000 + rank)
    active = [t for t in model.types if len(prep.train[t].x) > 0]
    windows = {t: UsageWindow(cfg.quantizer.sizes()) for t in model.types}
    held = _held_out_subset(prep.val, cfg)
    monitor = HealthMonitor(cfg.quantizer.sizes(), {t: d.x for t, d in held.items() if len(d.x)}, cfg.data.health_objects_per_code)
    init_records: dict[str, Any] = {}
    step = 0
    ck_path = ck_dir / CHECKPOINT
    if resume and ck_path.exists():
        state = torch.load(ck_path, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step = int(state["step"])
        # this rank's generator as of the checkpoint's step (files are tagged by step, so a kill
        # between a rank's RNG file and rank 0's checkpoint never pairs states of different steps)
        rng_path = ck_dir / f"rng_rank{rank}_step{step}.pt"
        if rng_path.exists():
            gen.set_state(torch.load(rng_path, weights_only=True)["generator"])
        elif rank == 0:
            gen.set_state(state["generator"])
        else:
            raise RuntimeError(f"{rng_path} missing: cannot resume rank {rank} exactly from {ck_path}")
        for t, w in state["windows"].items():
            windows[t].load_state_dict(w)
        monitor.load_state_dict(state["monitor"])
        init_records = json.loads(state["init_records"])
        if main:
            print(f"resumed from {ck_path} at step {step}", file=sys.stderr)
    log_path = out_dir / "train_log.jsonl"
    if main and step > 0 and log_path.exists():
        # drop log lines of steps after the checkpoint: they are redone, and logged again, now
        kept = [ln for ln in log_path.read_text().splitlines() if ln.strip() and json.loads(ln).get("step", 0) <= step]
        tmp = log_path.with_suffix(".tmp")
        tmp.write_text("".join(ln + "\n" for ln in kept))
        os.replace(tmp, log_path)
    log_f = open(log_path, "a") if main else None
    q = cfg.quantizer
    warm = q.warmup_steps

    def do_kmeans() -> None:
        n_want = int(q.kmeans_vectors_per_code * max(q.sizes()))
        model.eval()
        for t in active:
            d = prep.train[t]
            idx = torch.randperm(len(d.x), generator=gen)[:n_want]
            with torch.no_grad():
                z = model[t].encode_latent(d.x[idx])
            recs = kmeans_init(model[t].quantizer, z, q.kmeans_iters, gen)
            init_records[t] = {"step": step, "vectors": int(len(idx)), "wanted": n_want, "levels": recs}
        model.train()

    def save_checkpoint() -> None:
        torch.save({"generator": gen.get_state()}, ck_dir / f".rng_rank{rank}.tmp")
        os.replace(ck_dir / f".rng_rank{rank}.tmp", ck_dir / f"rng_rank{rank}_step{step}.pt")
        if main:
            _atomic_save(
                {
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "step": step,
                    "generator": gen.get_state(),
                    "windows": {t: w.state_dict() for t, w in windows.items()},
                    "monitor": monitor.state_dict(),
                    "init_records": json.dumps(init_records),
                },
                ck_path,
            )
        if world > 1:
            torch.distributed.barrier()
        for old in ck_dir.glob(f"rng_rank{rank}_step*.pt"):  # the checkpoint now matches this step's files
            if old.name != f"rng_rank{rank}_step{step}.pt":
                old.unlink(missing_ok=True)

    def evaluate() -> dict[str, Any]:
        rec = monitor.evaluate(step, held_out_codes(model, held))
        if log_f:
            log_f.write(json.dumps({"step": step, "health": {t: [round(l["used_fraction"], 4) for l in h["levels"]] for t, h in rec["types"].items()}}) + "\n")
        return rec

    model.train()
    bar = tqdm(total=cfg.train.max_steps, initial=step, disable=not (progress and main), desc=f"train {cfg.name}", dynamic_ncols=True)
    bs = cfg.train.per_device_train_batch_size
    while step < cfg.train.max_steps:
        if q.init == "kmeans" and step == warm and not init_records:
            do_kmeans()
        quantize = step >= warm
        for g in opt.param_groups:
            g["lr"] = cfg.train.learning_rate * _lr_factor(step, cfg)
        opt.zero_grad(set_to_none=False)
        total = 0.0
        batches = {}
        for t in active:
            d = prep.train[t]
            idx = torch.randint(len(d.x), (bs,), generator=gen)
            x, y = d.x[idx], d.y[idx]
            batches[t] = x
            loss, codes, parts, aux = model[t].loss(x, y, cfg, quantize=quantize)
            loss.backward()
            total += float(loss.detach())
            if codes is not None:
                windows[t].add(codes)
        if world > 1:
            for p in params:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                torch.distributed.all_reduce(p.grad)
                p.grad /= world
        torch.nn.utils.clip_grad_norm_(params, cfg.train.max_grad_norm)
        opt.step()
        step += 1
        if quantize and q.reset_every > 0 and step % q.reset_every == 0:
            for t in active:
                with torch.no_grad():
                    z = model[t].encode_latent(batches[t])
                recs = reset_dead_codes(model[t].quantizer, windows[t], z, q.reset_threshold, q.reset_max_fraction, gen)
                monitor.record_reset(step, t, recs)
        if log_f and (step % cfg.train.logging_steps == 0 or step == 1):
            log_f.write(json.dumps({"step": step, "loss": total, "lr": opt.param_groups[0]["lr"]}) + "\n")
            log_f.flush()
        bar.update(1)
        bar.set_postfix(loss=f"{total:.3f}")
        if step % cfg.train.eval_steps == 0 and step < cfg.train.max_steps and quantize:
            evaluate()
        if step % cfg.train.save_steps == 0 or (stop_after is not None and step >= stop_after):
            save_checkpoint()
        if stop_after is not None and step >= stop_after and step < cfg.train.max_steps:
            bar.close()
            if log_f:
                log_f.close()
            return {"stopped_at": step}
    bar.close()
    if q.init == "kmeans" and not init_records:  # warm-up longer than the run
        do_kmeans()
    # identical on every rank (deterministic); the export then finds no duplicates left
    dups = dedupe_codebooks(model)
    final = evaluate()  # the loop never evaluates at the last step
    save_checkpoint()
    codes = held_out_codes(model, held)
    recon = reconstruction_metrics(model, prep.val)
    summary = {
        "config": cfg.name,
        "steps": step,
        "world_size": world,
        "seconds": round(time.time() - t0, 2),
        "data": {**(data_info or {}), "train_events": prep.n_train_events, "validation_events": prep.n_val_events, **prep.info},
        "kmeans_init": init_records,
        "health_final": final["types"],
        "total_effective_bits": {t: h["total_effective_bits"] for t, h in final["types"].items()},
        "reconstruction": recon,
        "health_notes": monitor.notes,
    }
    if main:
        training = {k: summary[k] for k in ("config", "steps", "world_size", "data", "total_effective_bits", "reconstruction")}
        export_model(model, out_dir, training={**training, "duplicate_rows_perturbed_before_export": dups})
        monitor.save(out_dir, codes)
        (out_dir / "training_summary.json").write_text(json.dumps(summary, indent=1) + "\n")
        # the same folder is a ready HuggingFace tokenizer: EventTokenizer.from_pretrained(out_dir)
        from .tokenization_event import EventTokenizer

        EventTokenizer.from_export(out_dir).save_pretrained(out_dir)
    if log_f:
        log_f.close()
    if world > 1:
        # each rank's codebooks, so that their equality can be checked (tests, debugging)
        from safetensors.torch import save_file

        save_file(
            {f"{t}.codebook.{l}": model[t].quantizer.codebook(l).detach().contiguous().clone() for t in model.types for l in range(q.n_levels)},
            str(ck_dir / f"codebooks_rank{rank}.safetensors"),
        )
        torch.distributed.barrier()
    summary["model"] = model
    return summary


# ----------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hep-tok train-tokenizer", description="Train a residual-VQ event tokenizer.")
    p.add_argument("files", nargs="*", help="ROOT files (default: the embedded sample)")
    p.add_argument("--config", default="default", help="config name (tiny, default, plain) or YAML/JSON path")
    p.add_argument("--out", required=True, help="output directory (export, health, checkpoints)")
    p.add_argument("--max_steps", type=int)
    p.add_argument("--learning_rate", type=float)
    p.add_argument("--per_device_train_batch_size", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--max_events", type=int, help="use at most this many events")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override, e.g. quantizer.codebook_dim=16 (YAML value)")
    p.add_argument("--no_resume", action="store_true", help="ignore an existing checkpoint and start over")
    p.add_argument("--synthetic", type=int, metavar="N", help="train on N synthetic schema-shaped events (development only)")
    p.add_argument("--stop_after", type=int, help=argparse.SUPPRESS)
    p.add_argument("--no_progress", action="store_true")
    return p


def config_from_args(args: argparse.Namespace) -> TokenizerConfig:
    import yaml

    cfg = load_config(args.config)
    over: dict[str, Any] = {}
    for name in ("max_steps", "learning_rate", "per_device_train_batch_size", "seed"):
        if getattr(args, name) is not None:
            over[f"train.{name}"] = getattr(args, name)
    if args.max_events is not None:
        over["data.max_events"] = args.max_events
    for item in args.set:
        if "=" not in item:
            raise SystemExit(f"--set expects KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        over[k] = yaml.safe_load(v)
    return cfg.with_overrides(over) if over else cfg


def synthetic_events(n: int, seed: int = 0) -> ak.Array:
    """Schema-shaped random events (``tests/synthetic.py`` layout) for development runs."""
    from .rvq._synthetic import make_events

    return make_events(n, seed)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    cfg = config_from_args(args)
    if args.synthetic:
        events, info = synthetic_events(args.synthetic, cfg.train.seed), {"source": f"synthetic:{args.synthetic}"}
    else:
        events, files = load_events(args.files, cfg.data.max_events)
        info = {"files": files, "events": int(len(events))}
    if cfg.data.max_events is not None:
        events = events[: cfg.data.max_events]
    if accelerator.is_main_process:
        print(f"training {cfg.name} on {len(events)} events with {accelerator.num_processes} process(es)", file=sys.stderr)
    summary = train_tokenizer(cfg, events, args.out, resume=not args.no_resume, progress=not args.no_progress, stop_after=args.stop_after, data_info=info)
    if accelerator.is_main_process and "total_effective_bits" in summary:
        print(json.dumps({"out": str(args.out), "total_effective_bits": summary["total_effective_bits"], "world_size": summary["world_size"]}))
    accelerator.wait_for_everyone()
    return 0


if __name__ == "__main__":
    sys.exit(main())
