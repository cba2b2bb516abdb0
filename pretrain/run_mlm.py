#!/usr/bin/env python
"""Pretrain a small BERT with a masked-token objective on event token streams.

::

    accelerate launch pretrain/run_mlm.py --dataset DS_DIR --tokenizer TOK_DIR --output_dir RUN_DIR \
        [--max_steps 1000 --learning_rate 5e-4 --per_device_train_batch_size 32 --seed 42 \
         --masking token|object --eval_fraction 0.1 --resume_from_checkpoint latest|PATH]
    ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2 pretrain/run_mlm.py ... \
        --expect_num_processes 2

Model: transformers' ``BertForMaskedLM`` (default 4 layers, hidden 256, 4 heads, intermediate 1024)
with vocabulary size, special ids, token types and quantizer levels read from the tokenizer, plus a
learned quantizer-level embedding (``pretrain/modeling.py``).

Batches: global batches of ``per_device_train_batch_size * num_processes`` events, grouped by length
and padded to their longest sequence; each process takes its slice of rows. Masking randomness is
seeded by the run seed and the batch's event indices, and the loss is the mean over the masked tokens
of the *global* batch, so 1 and N processes train the same model at equal global batch size, and a
resumed run continues exactly where the checkpoint left it.

Outputs in RUN_DIR: ``final/`` (``config.json`` + ``model.safetensors``), ``metrics.json`` (train and
eval history, final eval), ``run_info.json`` (world size, data sizes, throughput), ``logs/``
(tensorboard), ``checkpoints/checkpoint-<step>/`` (``accelerator.save_state`` + ``trainer_state.json``).
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from pretrain.common import (
    CHECKPOINT_DIR,
    STATE_FILE,
    prune_checkpoints,
    resolve_checkpoint,
    scalar_hparams,
    write_json,
)


@dataclass
class ModelArguments:
    """Size of the encoder (vocabulary, token types and levels come from the tokenizer)."""

    hidden_size: int = field(default=256, metadata={"help": "hidden size"})
    num_hidden_layers: int = field(default=4, metadata={"help": "transformer layers"})
    num_attention_heads: int = field(default=4, metadata={"help": "attention heads"})
    intermediate_size: int = field(default=1024, metadata={"help": "feed-forward size"})
    dropout: float = field(default=0.1, metadata={"help": "hidden and attention dropout"})
    max_position_embeddings: int = field(default=0, metadata={"help": "0: max(128, longest sequence)"})


@dataclass
class DataArguments:
    """Token streams, tokenizer and masking."""

    dataset: str = field(metadata={"help": "dataset written by `hep-tok tokenize` (load_from_disk folder or parquet)"})
    tokenizer: str = field(metadata={"help": "tokenizer folder (EventTokenizer artifact)"})
    masking: str = field(default="token", metadata={"help": "token (15%, transformers' collator) or object (whole objects)"})
    mlm_probability: float = field(default=0.15, metadata={"help": "fraction of tokens / objects masked"})
    eval_fraction: float = field(default=0.1, metadata={"help": "held-out fraction of events"})
    max_events: int = field(default=0, metadata={"help": "use only the first N events (0: all)"})
    group_by_length: bool = field(default=True, metadata={"help": "length-grouped batches (else random batches)"})
    pad_to_length: int = field(default=0, metadata={"help": "pad every batch to this length (0: dynamic)"})


@dataclass
class RunArguments:
    """Optimisation, logging and checkpointing (names as in transformers' TrainingArguments)."""

    output_dir: str = field(metadata={"help": "run folder"})
    max_steps: int = field(default=1000, metadata={"help": "optimizer steps"})
    learning_rate: float = field(default=5e-4, metadata={"help": "peak learning rate"})
    per_device_train_batch_size: int = field(default=32, metadata={"help": "events per process per step"})
    per_device_eval_batch_size: int = field(default=64, metadata={"help": "events per evaluation batch"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay (not on biases/LayerNorm)"})
    warmup_ratio: float = field(default=0.05, metadata={"help": "fraction of steps of linear warm-up"})
    lr_scheduler_type: str = field(default="linear", metadata={"help": "transformers scheduler name"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping (0: off)"})
    seed: int = field(default=42, metadata={"help": "seed of init, split, batches and masking"})
    logging_steps: int = field(default=10, metadata={"help": "log training loss every N steps"})
    eval_steps: int = field(default=200, metadata={"help": "evaluate every N steps (0: only at the end)"})
    save_steps: int = field(default=200, metadata={"help": "checkpoint every N steps (0: never)"})
    save_total_limit: int = field(default=2, metadata={"help": "checkpoints kept (0: all)"})
    resume_from_checkpoint: str | None = field(default=None, metadata={"help": "'latest' or a checkpoint folder"})
    mixed_precision: str | None = field(default=None, metadata={"help": "no|fp16|bf16 (default: launcher's)"})
    report_to: str = field(default="tensorboard", metadata={"help": "tensorboard or none"})
    expect_num_processes: int = field(default=0, metadata={"help": "fail unless the world size is this (0: any)"})
    num_threads: int = field(default=0, metadata={"help": "torch threads per process (0: torch default)"})


class _Counter:
    """Sums of loss, hits and counts, reduced over processes on demand."""

    def __init__(self) -> None:
        self.loss = self.correct = self.n = 0.0

    def add(self, out: dict[str, torch.Tensor]) -> None:
        self.loss += float(out["loss_sum"].detach())
        self.correct += float(out["correct"])
        self.n += float(out["n"])

    def reduce(self, accelerator: Any) -> tuple[float, float, float]:
        t = torch.tensor([self.loss, self.correct, self.n], dtype=torch.float64, device=accelerator.device)
        t = accelerator.reduce(t, reduction="sum")
        self.__init__()
        return float(t[0]), float(t[1]), float(t[2])


def evaluate(model: Any, streams: Any, info: Any, args: "RunArguments", data: DataArguments, accelerator: Any) -> dict[str, Any]:
    """Masked-token loss, accuracy (overall and per quantizer level) and perplexity on the held-out events.

    Deterministic: the same batches and masks for any number of processes (batches are dealt round-robin
    to the processes and the sums reduced).
    """
    from pretrain.data import EventCollator

    order = np.argsort(-streams.lengths, kind="stable")
    bs = args.per_device_eval_batch_size
    batches = [order[s : s + bs] for s in range(0, len(order), bs)]
    coll = EventCollator(streams, info, data.masking, data.mlm_probability, seed=args.seed, salt=1,
                         pad_to=data.pad_to_length or None)
    n_levels = info.n_levels
    sums = torch.zeros(3 + 2 * n_levels, dtype=torch.float64)
    model.eval()
    with torch.no_grad():
        for b in batches[accelerator.process_index :: accelerator.num_processes]:
            batch = coll(b)
            inputs = {k: batch[k].to(accelerator.device) for k in ("input_ids", "attention_mask", "token_type_ids", "level_ids", "labels")}
            out = model(**inputs)
            sel = inputs["labels"] != -100
            lvl = inputs["level_ids"][sel].clamp(min=0)
            hit = (out["logits"].argmax(-1) == inputs["labels"][sel]).double()
            sums[0] += float(out["loss_sum"])
            sums[1] += float(out["correct"])
            sums[2] += float(out["n"])
            sums[3 : 3 + n_levels] += torch.bincount(lvl.cpu(), weights=hit.cpu(), minlength=n_levels)[:n_levels]
            sums[3 + n_levels :] += torch.bincount(lvl.cpu(), minlength=n_levels)[:n_levels].double()
    model.train()
    sums = accelerator.reduce(sums.to(accelerator.device), reduction="sum").cpu()
    n = float(sums[2])
    loss = float(sums[0]) / n if n else float("nan")
    per_level = (sums[3 : 3 + n_levels] / sums[3 + n_levels :].clamp(min=1)).tolist()
    return {
        "eval_loss": loss,
        "eval_accuracy": float(sums[1]) / n if n else float("nan"),
        "eval_perplexity": math.exp(loss) if n else float("nan"),
        "eval_accuracy_by_level": per_level,
        "eval_masked_tokens": int(n),
        "eval_events": len(streams),
    }


def _optimizer(model: torch.nn.Module, args: RunArguments) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "LayerNorm" in name or "level_embeddings" in name else decay).append(p)
    groups = [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=args.learning_rate)


class _Schedule:
    """The learning-rate scheduler stepped once per optimizer step (registered for checkpointing)."""

    def __init__(self, sched: Any):
        self.sched = sched

    def state_dict(self) -> dict[str, Any]:
        return self.sched.state_dict()

    def load_state_dict(self, d: dict[str, Any]) -> None:
        self.sched.load_state_dict(d)


def train(model_args: ModelArguments, data_args: DataArguments, args: RunArguments) -> dict[str, Any]:
    """Run the pretraining; returns the final metrics (also written to ``output_dir/metrics.json``)."""
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration, set_seed
    from tqdm.auto import tqdm
    from transformers import get_scheduler

    from pretrain.data import EventCollator, LengthGroupedBatchSampler, TokenStreams, load_token_dataset, split_indices
    from pretrain.modeling import EventBertForMaskedLM, make_config
    from pretrain.vocab import TokenizerInfo

    if data_args.masking not in ("token", "object"):
        raise ValueError(f"--masking must be 'token' or 'object', not {data_args.masking!r}")
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    out_dir = Path(args.output_dir)
    log_with = None if args.report_to in ("none", "", None) else args.report_to
    accelerator = Accelerator(
        log_with=log_with,
        mixed_precision=args.mixed_precision,
        project_config=ProjectConfiguration(project_dir=str(out_dir), logging_dir=str(out_dir / "logs")),
    )
    world, rank = accelerator.num_processes, accelerator.process_index
    if args.expect_num_processes and world != args.expect_num_processes:
        raise RuntimeError(
            f"expected {args.expect_num_processes} processes but accelerate started {world} "
            f"(for CPU data parallelism use: ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes N)"
        )
    set_seed(args.seed)

    info = TokenizerInfo.load(data_args.tokenizer)
    ds = load_token_dataset(data_args.dataset)
    if data_args.max_events:
        ds = ds.select(range(min(data_args.max_events, len(ds))))
    streams = TokenStreams.from_dataset(ds, info)
    train_idx, eval_idx = split_indices(len(streams), data_args.eval_fraction, args.seed)
    train_s, eval_s = streams.subset(train_idx), streams.subset(eval_idx)
    global_bs = args.per_device_train_batch_size * world
    sampler = LengthGroupedBatchSampler(train_s.lengths, global_bs, seed=args.seed, group_by_length=data_args.group_by_length)
    collator = EventCollator(train_s, info, data_args.masking, data_args.mlm_probability, seed=args.seed,
                             rank=rank, world=world, pad_to=data_args.pad_to_length or None)
    n_batches = len(sampler)

    max_pos = model_args.max_position_embeddings or max(128, int(streams.lengths.max()), data_args.pad_to_length)
    config = make_config(info, model_args.hidden_size, model_args.num_hidden_layers, model_args.num_attention_heads,
                         model_args.intermediate_size, max_pos, model_args.dropout)
    model = EventBertForMaskedLM(config, info.n_levels)
    n_params = sum(p.numel() for p in model.parameters())
    optimizer = _optimizer(model, args)
    scheduler = get_scheduler(args.lr_scheduler_type, optimizer, num_warmup_steps=int(args.warmup_ratio * args.max_steps),
                              num_training_steps=args.max_steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(_Schedule(scheduler))

    history: list[dict[str, Any]] = []
    eval_history: list[dict[str, Any]] = []
    step = 0
    ckpt = resolve_checkpoint(args.resume_from_checkpoint, out_dir)
    resumed_from = None
    if ckpt is not None:
        accelerator.load_state(str(ckpt))
        state = json.loads((ckpt / STATE_FILE).read_text())
        step, history, eval_history = int(state["step"]), state.get("history", []), state.get("eval_history", [])
        resumed_from = {"checkpoint": str(ckpt), "step": step}
        accelerator.print(f"resumed from {ckpt} at step {step}")
    elif args.resume_from_checkpoint and args.resume_from_checkpoint != "latest":
        raise FileNotFoundError(args.resume_from_checkpoint)

    if log_with:
        accelerator.init_trackers("mlm", config=scalar_hparams(model_args, data_args, args))
    run_info = {
        "num_processes": world,
        "distributed_type": str(accelerator.distributed_type),
        "device": str(accelerator.device),
        "mixed_precision": str(accelerator.mixed_precision),
        "global_batch_size": global_bs,
        "batches_per_epoch": n_batches,
        "n_events": len(streams),
        "n_train_events": len(train_s),
        "n_eval_events": len(eval_s),
        "mean_sequence_length": float(streams.lengths.mean()),
        "n_parameters": n_params,
        "tokenizer": info.summary(),
        "model_config": config.to_dict(),
        "resumed_from": resumed_from,
        "args": {**scalar_hparams(model_args, data_args, args)},
    }

    def save_checkpoint() -> None:
        d = out_dir / CHECKPOINT_DIR / f"checkpoint-{step}"
        accelerator.save_state(str(d))
        if accelerator.is_main_process:
            write_json(d / STATE_FILE, {"step": step, "history": history, "eval_history": eval_history})
            prune_checkpoints(out_dir, args.save_total_limit)
        accelerator.wait_for_everyone()

    counter = _Counter()
    epoch, start_batch = divmod(step, n_batches)
    t0, tokens_seen, start_step = time.perf_counter(), 0, step
    pbar = tqdm(total=args.max_steps, initial=step, disable=not accelerator.is_local_main_process, desc="mlm")
    model.train()
    while step < args.max_steps:
        for idx in sampler.iterate(epoch, start_batch):
            batch = collator(idx)
            n_global = int(batch.pop("n_masked_global"))
            inputs = {k: batch[k].to(accelerator.device) for k in ("input_ids", "attention_mask", "token_type_ids", "level_ids", "labels")}
            tokens_seen += int(batch["attention_mask"].sum())
            out = model(**inputs)
            loss = out["loss_sum"] / max(n_global, 1) * world  # DDP averages gradients -> global masked-token mean
            accelerator.backward(loss)
            if args.max_grad_norm:
                accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            counter.add(out)
            step += 1
            pbar.update(1)
            if step % args.logging_steps == 0 or step == args.max_steps:
                ls, c, n = counter.reduce(accelerator)
                rec = {"step": step, "loss": ls / max(n, 1), "accuracy": c / max(n, 1), "learning_rate": scheduler.get_last_lr()[0], "epoch": epoch}
                history.append(rec)
                accelerator.log({"train/loss": rec["loss"], "train/accuracy": rec["accuracy"], "train/learning_rate": rec["learning_rate"]}, step=step)
                pbar.set_postfix(loss=f"{rec['loss']:.3f}")
            if args.eval_steps and step % args.eval_steps == 0 and step < args.max_steps and len(eval_s):
                m = evaluate(accelerator.unwrap_model(model), eval_s, info, args, data_args, accelerator)
                eval_history.append({"step": step, **m})
                accelerator.log({f"eval/{k[5:]}": v for k, v in m.items() if isinstance(v, float)}, step=step)
            if args.save_steps and step % args.save_steps == 0:
                save_checkpoint()
            if step >= args.max_steps:
                break
        epoch, start_batch = epoch + 1, 0
    pbar.close()
    elapsed = time.perf_counter() - t0
    tokens = accelerator.reduce(torch.tensor(float(tokens_seen), device=accelerator.device), reduction="sum")

    final = evaluate(accelerator.unwrap_model(model), eval_s, info, args, data_args, accelerator) if len(eval_s) else {}
    if final:
        eval_history.append({"step": step, **final})
        accelerator.log({f"eval/{k[5:]}": v for k, v in final.items() if isinstance(v, float)}, step=step)
    run_info.update({"steps": step, "steps_this_run": step - start_step, "train_seconds": elapsed,
                     "train_tokens_per_second": float(tokens) / elapsed if elapsed > 0 else None})
    metrics = {"final": final, "train_history": history, "eval_history": eval_history, "num_processes": world, "step": step}
    if accelerator.is_main_process:
        accelerator.unwrap_model(model).save_pretrained(out_dir / "final", extra={"tokenizer": info.summary(), "masking": data_args.masking})
        write_json(out_dir / "metrics.json", metrics)
        write_json(out_dir / "run_info.json", run_info)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return metrics


def parse(argv: list[str] | None = None) -> tuple[ModelArguments, DataArguments, RunArguments]:
    from transformers import HfArgumentParser

    parser = HfArgumentParser((ModelArguments, DataArguments, RunArguments))
    return parser.parse_args_into_dataclasses(args=argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point (``accelerate launch pretrain/run_mlm.py ...``)."""
    model_args, data_args, args = parse(argv)
    m = train(model_args, data_args, args)
    fin = m.get("final") or {}
    if fin:
        print(f"final eval: loss {fin['eval_loss']:.4f}  accuracy {fin['eval_accuracy']:.4f}  "
              f"perplexity {fin['eval_perplexity']:.2f}  ({fin['eval_masked_tokens']} masked tokens)")
    print(f"model and metrics in {args.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
