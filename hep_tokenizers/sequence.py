"""Layout of token ids: special tokens, groups, lengths and truncation.

See ``docs/internals.md`` section 4 for the layout this module implements.
"""

from __future__ import annotations

import numpy as np

from .schema import DEFAULT_SCHEMA, Schema

SPECIAL_TOKENS: tuple[str, ...] = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID = range(len(SPECIAL_TOKENS))


def sequence_length(n_objects: np.ndarray | int, n_levels: int = 4, schema: Schema = DEFAULT_SCHEMA) -> np.ndarray:
    """Token count of events with ``n_objects`` objects in total (all groups), untruncated.

    ``1 [CLS] + n_levels per event block + one [SEP] per group + n_levels per object``.
    """
    fixed = 1 + n_levels * len(schema.event_blocks) + len(schema.groups)
    return fixed + n_levels * np.asarray(n_objects, dtype=np.int64)
