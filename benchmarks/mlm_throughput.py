#!/usr/bin/env python
"""MLM training throughput: non-padding tokens per second, this project's batching vs padding to 128.

::

    python benchmarks/mlm_throughput.py [--dataset DS_DIR --tokenizer TOK_DIR] [--steps 30 --batch_size 64]

Same model (default: the run_mlm.py default, 4 layers x 256), same events, same optimizer; one
process. Variants, each timed over ``--steps`` training steps (forward + backward + AdamW) after
``--warmup`` steps:

* ``pad128``            random batches, every sequence padded to 128 (the baseline)
* ``dynamic``           random batches padded to their longest sequence
* ``dynamic+grouped``   length-grouped batches padded to their longest (what run_mlm.py does)

Without ``--dataset`` a synthetic token dataset (``pretrain/synthetic.py``, default-schema layout, 4
levels, mean length ~30 like the reference study's median 35) is used.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch


def bench(model, opt, coll, batches, warmup: int) -> dict[str, float]:
    keys = ("input_ids", "attention_mask", "token_type_ids", "level_ids", "labels")
    real = padded = 0
    t0 = None
    for i, idx in enumerate(batches):
        if i == warmup:
            t0 = time.perf_counter()
            real = padded = 0
        b = coll(idx)
        n = int(b["n_masked_global"])
        out = model(**{k: b[k] for k in keys})
        (out["loss_sum"] / max(n, 1)).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        real += int(b["attention_mask"].sum())
        padded += b["attention_mask"].numel()
    dt = time.perf_counter() - t0
    return {"tokens_per_s": real / dt, "padded_per_s": padded / dt, "pad_fraction": 1 - real / padded, "s_per_step": dt / (len(batches) - warmup)}


def main(argv: list[str] | None = None) -> int:
    from pretrain.data import EventCollator, LengthGroupedBatchSampler, TokenStreams, load_token_dataset
    from pretrain.modeling import EventBertForMaskedLM, make_config
    from pretrain.synthetic import write_synthetic
    from pretrain.vocab import TokenizerInfo

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset")
    p.add_argument("--tokenizer")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--hidden_size", type=int, default=256)
    p.add_argument("--num_hidden_layers", type=int, default=4)
    p.add_argument("--codebook_size", type=int, default=512, help="synthetic data: codes per level")
    p.add_argument("--num_threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    torch.set_num_threads(a.num_threads)
    torch.manual_seed(a.seed)
    if a.dataset:
        ds_dir, tok_dir = a.dataset, a.tokenizer
    else:
        tmp = tempfile.mkdtemp(prefix="mlm_bench_")
        ds_dir, tok_dir = write_synthetic(tmp, n_events=4000, codebook_size=a.codebook_size, n_levels=4, seed=a.seed)
    info = TokenizerInfo.load(tok_dir)
    st = TokenStreams.from_dataset(load_token_dataset(ds_dir), info)
    n = a.steps + a.warmup
    L = st.lengths
    print(f"events {len(st)}, sequence length mean {L.mean():.1f} median {np.median(L):.0f} max {L.max()}, "
          f"vocab {info.vocab_size}, batch {a.batch_size}, {a.steps} timed steps, threads {a.num_threads}")
    if L.max() > 128:
        raise SystemExit(f"longest sequence has {L.max()} tokens; the pad-to-128 baseline cannot hold it")
    grouped = LengthGroupedBatchSampler(L, a.batch_size, seed=a.seed)
    rnd = LengthGroupedBatchSampler(L, a.batch_size, seed=a.seed, group_by_length=False)
    def take(s):
        out, e = [], 0
        while len(out) < n:
            out += s.batches(e)
            e += 1
        return out[:n]
    variants = {
        "pad128": (EventCollator(st, info, "token", seed=a.seed, pad_to=128), take(rnd)),
        "dynamic": (EventCollator(st, info, "token", seed=a.seed), take(rnd)),
        "dynamic+grouped": (EventCollator(st, info, "token", seed=a.seed), take(grouped)),
    }
    cfg = make_config(info, a.hidden_size, a.num_hidden_layers, max(4, a.hidden_size // 64), 4 * a.hidden_size, 128, 0.1)
    torch.manual_seed(a.seed)
    init = EventBertForMaskedLM(cfg, info.n_levels).state_dict()
    res = {}
    for name, (coll, batches) in variants.items():
        model = EventBertForMaskedLM(cfg, info.n_levels)
        model.load_state_dict(init)
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        res[name] = bench(model, opt, coll, batches, a.warmup)
    base = res["pad128"]["tokens_per_s"]
    print(f"{'batching':<18}{'non-pad tok/s':>15}{'padding':>10}{'s/step':>9}{'speed-up':>10}")
    for name, r in res.items():
        print(f"{name:<18}{r['tokens_per_s']:>15.0f}{r['pad_fraction']:>10.1%}{r['s_per_step']:>9.3f}{r['tokens_per_s'] / base:>9.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
