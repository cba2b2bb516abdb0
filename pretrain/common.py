"""Pieces shared by the pretraining and fine-tuning scripts: run bookkeeping, checkpoints, JSON."""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT_DIR = "checkpoints"
STATE_FILE = "trainer_state.json"


def ensure_importable() -> None:
    """Let ``python pretrain/run_mlm.py`` / ``accelerate launch pretrain/...`` import the ``pretrain`` package."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))


def write_json(path: str | Path, obj: Any) -> Path:
    """Write JSON atomically (temporary file + rename); NaN/inf become null."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_clean(obj), indent=1, default=str))
    os.replace(tmp, path)
    return path


def _clean(obj: Any) -> Any:
    if is_dataclass(obj) and not isinstance(obj, type):
        obj = asdict(obj)
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if hasattr(obj, "item") and getattr(obj, "ndim", 1) == 0:
        return _clean(obj.item())
    return obj


def scalar_hparams(*objs: Any) -> dict[str, Any]:
    """Flat ``{name: int|float|str|bool}`` of dataclasses, for tracker ``init_trackers(config=...)``."""
    out: dict[str, Any] = {}
    for o in objs:
        for k, v in (asdict(o) if is_dataclass(o) else dict(o)).items():
            out[k] = v if isinstance(v, (int, float, str, bool)) else str(v)
    return out


def checkpoints(output_dir: str | Path) -> list[Path]:
    """``output_dir/checkpoints/checkpoint-<step>`` folders with a state file, by step."""
    d = Path(output_dir) / CHECKPOINT_DIR
    found = [p for p in d.glob("checkpoint-*") if (p / STATE_FILE).exists() and p.name.split("-")[-1].isdigit()]
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]))


def resolve_checkpoint(value: str | None, output_dir: str | Path) -> Path | None:
    """``None``, ``"latest"`` (newest in ``output_dir``, or None when there is none) or a path."""
    if not value:
        return None
    if value == "latest":
        cps = checkpoints(output_dir)
        return cps[-1] if cps else None
    p = Path(value)
    if not (p / STATE_FILE).exists():
        raise FileNotFoundError(f"{p} is not a checkpoint (no {STATE_FILE})")
    return p


def prune_checkpoints(output_dir: str | Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints (``keep <= 0``: keep all)."""
    if keep <= 0:
        return
    for p in checkpoints(output_dir)[:-keep]:
        shutil.rmtree(p, ignore_errors=True)
