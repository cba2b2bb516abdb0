"""hep-tokenizers: collider events from ROOT files -> tokens for transformer foundation models."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # pragma: no cover
    from .io import iter_events, read_events
    from .tokenization_event import EventTokenizer

_LAZY = {
    "read_events": ("hep_tokenizers.io", "read_events"),
    "iter_events": ("hep_tokenizers.io", "iter_events"),
    "EventTokenizer": ("hep_tokenizers.tokenization_event", "EventTokenizer"),
}


def __getattr__(name: str) -> Any:
    # Lazy so that `import hep_tokenizers` (and the CLI) stays fast and torch-free until needed.
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'hep_tokenizers' has no attribute {name!r}")


__all__ = ["EventTokenizer", "read_events", "iter_events", "__version__"]
