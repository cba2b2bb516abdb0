"""Event generation: Pythia 8 + FastJet anti-kt + a simple detector response (docs/generator.md).

>>> from hep_tokenizers.generate import generate_events
>>> events = generate_events("ttbar", 1000, seed=1, workers=2)   # schema event array

``pythia8mc`` and ``fastjet`` (the ``generate`` extra) are imported only when events are made.
"""

from __future__ import annotations

from .pythia import MIXTURE, PROCESSES
from .run import PROCESS_IDS, PROCESS_NAMES, generate_events

__all__ = ["generate_events", "PROCESSES", "PROCESS_NAMES", "PROCESS_IDS", "MIXTURE"]
