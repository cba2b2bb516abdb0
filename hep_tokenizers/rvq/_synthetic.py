"""Development-only access to the schema-shaped synthetic events of ``tests/synthetic.py``.

Available in a source checkout (editable install); not physics, never used by default.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import awkward as ak


def make_events(n_events: int = 1000, seed: int = 0) -> ak.Array:
    """``tests/synthetic.py::make_events`` loaded from the source checkout."""
    path = Path(__file__).resolve().parents[2] / "tests" / "synthetic.py"
    if not path.exists():
        raise FileNotFoundError(f"--synthetic needs a source checkout: {path} not found")
    spec = importlib.util.spec_from_file_location("_hep_tok_synthetic", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod.make_events(n_events, seed)
