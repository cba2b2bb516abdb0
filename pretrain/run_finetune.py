#!/usr/bin/env python
"""Fine-tune event classification (process labels) from a pretrained event-BERT, or from scratch.

::

    accelerate launch pretrain/run_finetune.py --dataset DS_DIR --tokenizer TOK_DIR --output_dir OUT \
        --model_name_or_path RUN_DIR/model [--from_scratch] [--label_column process --max_steps 300 ...]

``--model_name_or_path`` is a model saved by ``run_mlm.py`` (its ``final/`` folder or the run folder).
With ``--from_scratch`` the same architecture is initialised randomly (the fair baseline); without a
model path at all, the size arguments define it. The held-out split is deterministic in ``--seed``.

Writes ``OUT/metrics.json``: accuracy, ROC AUC (one-vs-rest, macro-averaged over classes),
majority-class accuracy (chance), confusion matrix, class names and counts, events without a label
(dropped and counted), plus the training-loss history.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from pretrain.common import scalar_hparams, write_json

METRICS_FILE = "metrics.json"


@dataclass
class FinetuneArguments:
    """Data, model and optimisation of the classification run."""

    dataset: str = field(metadata={"help": "dataset written by `hep-tok tokenize`"})
    tokenizer: str = field(metadata={"help": "tokenizer folder"})
    output_dir: str = field(metadata={"help": "output folder"})
    model_name_or_path: str | None = field(default=None, metadata={"help": "model saved by run_mlm.py (or its run folder)", "aliases": ["--model"]})
    from_scratch: bool = field(default=False, metadata={"help": "random init (architecture from --model_name_or_path if given)"})
    label_column: str = field(default="process", metadata={"help": "per-event label column (process, source_file, ...)"})
    eval_fraction: float = field(default=0.25, metadata={"help": "held-out fraction"})
    max_events: int = field(default=0, metadata={"help": "use only the first N events (0: all)"})
    max_steps: int = field(default=300, metadata={"help": "optimizer steps"})
    learning_rate: float = field(default=2e-4, metadata={"help": "peak learning rate"})
    per_device_train_batch_size: int = field(default=32, metadata={"help": "events per process per step"})
    per_device_eval_batch_size: int = field(default=128, metadata={"help": "events per eval batch"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    warmup_ratio: float = field(default=0.1, metadata={"help": "linear warm-up fraction"})
    seed: int = field(default=42, metadata={"help": "seed of init, split and batches"})
    hidden_size: int = field(default=256, metadata={"help": "scratch model without a model path: hidden size"})
    num_hidden_layers: int = field(default=4, metadata={"help": "... layers"})
    num_attention_heads: int = field(default=4, metadata={"help": "... heads"})
    intermediate_size: int = field(default=1024, metadata={"help": "... feed-forward size"})
    dropout: float = field(default=0.1, metadata={"help": "... dropout"})
    num_threads: int = field(default=0, metadata={"help": "torch threads per process (0: default)"})
    expect_num_processes: int = field(default=0, metadata={"help": "fail unless the world size is this"})


def _model_dir(p: str) -> Path:
    d = Path(p)
    return d / "final" if (d / "final" / "config.json").exists() else d


def classification_metrics(y: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """Accuracy, ROC AUC (binary, or one-vs-rest macro for more classes), chance level, confusion matrix."""
    from sklearn.metrics import roc_auc_score

    pred = probs.argmax(1)
    k = len(classes)
    present = np.unique(y)
    auc: float | None
    if len(present) < 2:
        auc = None  # undefined with one class in the held-out set
    elif k == 2:
        auc = float(roc_auc_score(y, probs[:, 1]))
    else:
        # macro over the classes present in the held-out set
        aucs = [float(roc_auc_score(y == c, probs[:, c])) for c in present]
        auc = float(np.mean(aucs))
    conf = np.zeros((k, k), dtype=np.int64)
    np.add.at(conf, (y, pred), 1)
    counts = np.bincount(y, minlength=k)
    return {
        "accuracy": float((pred == y).mean()) if len(y) else float("nan"),
        "roc_auc": auc,
        "chance_accuracy": float(counts.max() / counts.sum()) if counts.sum() else float("nan"),
        "n_eval": int(len(y)),
        "eval_class_counts": {c: int(n) for c, n in zip(classes, counts)},
        "confusion_matrix": conf.tolist(),
    }


def finetune(a: FinetuneArguments) -> dict[str, Any]:
    """Train and evaluate; returns the metrics (also written to ``output_dir/metrics.json``)."""
    from accelerate import Accelerator
    from accelerate.utils import gather_object, set_seed
    from tqdm.auto import tqdm
    from transformers import get_scheduler

    from pretrain.data import EventCollator, LengthGroupedBatchSampler, TokenStreams, load_token_dataset, split_indices
    from pretrain.modeling import EventBertForSequenceClassification, make_config, read_config
    from pretrain.vocab import TokenizerInfo

    if a.num_threads:
        torch.set_num_threads(a.num_threads)
    accelerator = Accelerator()
    world, rank = accelerator.num_processes, accelerator.process_index
    if a.expect_num_processes and world != a.expect_num_processes:
        raise RuntimeError(f"expected {a.expect_num_processes} processes, accelerate started {world}")
    set_seed(a.seed)
    info = TokenizerInfo.load(a.tokenizer)
    ds = load_token_dataset(a.dataset)
    if a.max_events:
        ds = ds.select(range(min(a.max_events, len(ds))))
    if a.label_column not in ds.column_names:
        raise ValueError(f"dataset {a.dataset} has no label column {a.label_column!r} (columns: {ds.column_names})")
    streams = TokenStreams.from_dataset(ds, info)
    raw = np.asarray(ds[a.label_column], dtype=object)
    has_label = np.array([v is not None and v == v for v in raw])  # None / NaN -> unlabeled
    n_unlabeled = int((~has_label).sum())
    classes = sorted({str(v) for v in raw[has_label]})
    if len(classes) < 2:
        raise ValueError(f"dataset {a.dataset}: column {a.label_column!r} has {len(classes)} distinct label(s) {classes}; "
                         "classification needs at least 2 (try --label_column source_file)")
    labeled = np.nonzero(has_label)[0]
    streams = streams.subset(labeled)
    y_all = np.searchsorted(np.array(classes, dtype=object), np.array([str(v) for v in raw[labeled]], dtype=object))
    tr, ev = split_indices(len(streams), a.eval_fraction, a.seed)
    train_s, eval_s = streams.subset(tr), streams.subset(ev)
    y_tr, y_ev = y_all[tr], y_all[ev]

    init = "scratch"
    if a.model_name_or_path:
        mdir = _model_dir(a.model_name_or_path)
        if a.from_scratch:
            config, n_levels, _ = read_config(mdir)
            model = EventBertForSequenceClassification(config, n_levels, len(classes))
        else:
            model, _ = EventBertForSequenceClassification.from_mlm(mdir, len(classes))
            init = f"pretrained:{mdir}"
        if model.config.vocab_size != info.vocab_size:
            raise ValueError(f"model {mdir} has vocab_size {model.config.vocab_size}, tokenizer {a.tokenizer} has {info.vocab_size}")
    else:
        max_pos = max(128, int(streams.lengths.max()))
        config = make_config(info, a.hidden_size, a.num_hidden_layers, a.num_attention_heads, a.intermediate_size, max_pos, a.dropout)
        model = EventBertForSequenceClassification(config, info.n_levels, len(classes))
    if int(streams.lengths.max()) > model.config.max_position_embeddings:
        raise ValueError(f"longest sequence ({int(streams.lengths.max())}) exceeds the model's max_position_embeddings")

    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "level_embeddings" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "level_embeddings" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=a.learning_rate)
    sched = get_scheduler("linear", opt, num_warmup_steps=int(a.warmup_ratio * a.max_steps), num_training_steps=a.max_steps)
    model, opt = accelerator.prepare(model, opt)

    gbs = a.per_device_train_batch_size * world
    sampler = LengthGroupedBatchSampler(train_s.lengths, min(gbs, len(train_s) // world * world), seed=a.seed)
    coll = EventCollator(train_s, info, None, rank=rank, world=world)
    keys = ("input_ids", "attention_mask", "token_type_ids", "level_ids")
    history, step, epoch, t0 = [], 0, 0, time.perf_counter()
    run_loss, run_n = 0.0, 0
    pbar = tqdm(total=a.max_steps, disable=not accelerator.is_local_main_process, desc=f"finetune ({init.split(':')[0]})")
    model.train()
    while step < a.max_steps:
        for idx in sampler.iterate(epoch):
            b = coll(idx)
            target = torch.as_tensor(y_tr[b["index"].numpy()], device=accelerator.device)
            logits = model(**{k: b[k].to(accelerator.device) for k in keys})
            loss_sum = torch.nn.functional.cross_entropy(logits.float(), target, reduction="sum")
            accelerator.backward(loss_sum / len(idx) * world)
            accelerator.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            run_loss, run_n = run_loss + float(loss_sum.detach()), run_n + len(target)
            step += 1
            pbar.update(1)
            if step % 10 == 0 or step == a.max_steps:
                t = accelerator.reduce(torch.tensor([run_loss, run_n], dtype=torch.float64, device=accelerator.device), "sum")
                history.append({"step": step, "loss": float(t[0] / max(t[1], 1))})
                pbar.set_postfix(loss=f"{history[-1]['loss']:.3f}")
                run_loss, run_n = 0.0, 0
            if step >= a.max_steps:
                break
        epoch += 1
    pbar.close()

    # held-out predictions: batches dealt round-robin, gathered on every process
    net = accelerator.unwrap_model(model)
    net.eval()
    order = np.argsort(-eval_s.lengths, kind="stable")
    batches = [order[s : s + a.per_device_eval_batch_size] for s in range(0, len(order), a.per_device_eval_batch_size)]
    ecoll = EventCollator(eval_s, info, None)
    mine = []
    with torch.no_grad():
        for idx in batches[rank::world]:
            b = ecoll(idx)
            p = torch.softmax(net(**{k: b[k].to(accelerator.device) for k in keys}).float(), -1).cpu().numpy()
            mine.append((idx, p))
    parts = gather_object(mine)
    index = np.concatenate([i for i, _ in parts]) if parts else np.zeros(0, dtype=np.int64)
    probs = np.concatenate([p for _, p in parts]) if parts else np.zeros((0, len(classes)))
    metrics = classification_metrics(y_ev[index], probs, classes)
    metrics.update({
        "init": init,
        "classes": classes,
        "label_column": a.label_column,
        "n_train": len(train_s),
        "n_unlabeled_dropped": n_unlabeled,
        "steps": step,
        "train_seconds": time.perf_counter() - t0,
        "num_processes": world,
        "train_history": history,
        "args": scalar_hparams(a),
    })
    if accelerator.is_main_process:
        write_json(Path(a.output_dir) / METRICS_FILE, metrics)
    accelerator.wait_for_everyone()
    return metrics


def main(argv: list[str] | None = None) -> int:
    """Entry point (``accelerate launch pretrain/run_finetune.py ...``)."""
    from transformers import HfArgumentParser

    (a,) = HfArgumentParser((FinetuneArguments,)).parse_args_into_dataclasses(args=argv)
    m = finetune(a)
    auc = "n/a" if m["roc_auc"] is None else f"{m['roc_auc']:.4f}"
    print(f"[{m['init']}] accuracy {m['accuracy']:.4f} (chance {m['chance_accuracy']:.4f})  ROC AUC {auc}  "
          f"on {m['n_eval']} held-out events; metrics in {Path(a.output_dir) / METRICS_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
