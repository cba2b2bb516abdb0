"""The embedded default sample (a small mixed-process ROOT file made by `hep-tok generate`)."""

from __future__ import annotations

from pathlib import Path

SAMPLE_NAME = "sample_mixed_13TeV.root"


def sample_path() -> Path:
    """Path of the embedded default sample; see ``README.md`` beside it for how it was made."""
    path = Path(__file__).with_name(SAMPLE_NAME)
    if not path.exists():
        raise FileNotFoundError(f"embedded sample {path} is missing from this installation")
    return path
