"""``EventTokenizer``: collider events -> token ids, the HuggingFace way.

A subclass of ``transformers.PreTrainedTokenizerBase`` built on an exported RVQ model
(``docs/internals.md`` section 3, read by :mod:`hep_tokenizers.codebook`)::

    tok = EventTokenizer.from_pretrained("tok_dir")          # or a hub id, or .from_export(dir)
    enc = tok(events, padding=True, truncation=True, max_length=128, return_tensors="pt")
    enc["input_ids"], enc["attention_mask"], enc["token_type_ids"], enc["level_ids"]
    tok.decode_events(enc["input_ids"])                        # awkward array, physics units

Sequence layout (``docs/internals.md`` section 4): ``[CLS] met_q0..met_qL-1 [SEP] electrons
[SEP] muons [SEP] taus [SEP] photons [SEP] jets``, ``n_levels`` tokens per object, objects
pT-descending within a group. ``token_type_ids`` is 0 for special tokens and the object
type's ``token_type_id`` (1..6) otherwise; ``level_ids`` is the quantizer level (0..L-1) of an
object token and ``-1`` for special and padding tokens (add 1 before an embedding lookup).

Artifact written by :meth:`EventTokenizer.save_pretrained` (never pickle; loading reads only
JSON and safetensors):

``tokenizer_config.json``   HF config with ``auto_map`` -> ``tokenization_event.EventTokenizer``
``special_tokens_map.json`` the five special tokens
``event_tokenizer.json``    schema, normalisation, vocabulary layout (id offsets per type and
                            level), sequence layout, package and format versions, file hashes
``rvq_config.json``         the RVQ export config (section 3), verbatim
``rvq.safetensors``         the RVQ tensors, verbatim (its sha256 is in both JSON files)
``tokenization_event.py``   this file, for ``AutoTokenizer.from_pretrained(dir, trust_remote_code=True)``
``README.md``               model card filled from ``model_cards/event_tokenizer.md``

Remote-code choice: the copied ``tokenization_event.py`` is this module verbatim and imports
``hep_tokenizers`` (absolute imports only), so ``AutoTokenizer`` needs the package installed
(``pip install hep-tokenizers``); the files in the folder stay data only.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import awkward as ak
import numpy as np
from transformers.tokenization_utils_base import AddedToken, BatchEncoding, PreTrainedTokenizerBase

from hep_tokenizers import __version__ as PACKAGE_VERSION
from hep_tokenizers.codebook import load_export
from hep_tokenizers.features import object_columns
from hep_tokenizers.schema import ObjectType
from hep_tokenizers.sequence import (
    CLS_ID,
    MASK_ID,
    PAD_ID,
    SEP_ID,
    SPECIAL_LEVEL_ID,
    SPECIAL_TOKEN_TYPE_ID,
    SPECIAL_TOKENS,
    UNK_ID,
    SequenceBatch,
    VocabLayout,
    assemble,
    fixed_length,
    parse_ids,
)

logger = logging.getLogger(__name__)

#: Version of ``event_tokenizer.json``; a file with a newer version is refused.
FORMAT_VERSION = 1
EVENT_TOKENIZER_FILE = "event_tokenizer.json"
RVQ_CONFIG_FILE = "rvq_config.json"
RVQ_TENSORS_FILE = "rvq.safetensors"
MODEL_CARD_TEMPLATE = "event_tokenizer.md"
DEFAULT_MAX_LENGTH = 128


class TokenizerArtifactError(ValueError):
    """A tokenizer folder is incomplete, inconsistent or from a newer format."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


#: A continuous feature further than this many training standard deviations (after its transform)
#: from the training mean cannot be tokenized meaningfully (and overflows float32 further out):
#: ``EventTokenizer`` raises, ``hep-tok tokenize`` rejects the event and counts it.
MAX_STANDARDISED = 1e4


def value_problems(
    transform: Any, otype: ObjectType, cols: Mapping[str, np.ndarray]
) -> tuple[dict[str, np.ndarray], dict[str, dict[str, int]]]:
    """Check one object type's feature columns (``object_columns`` output) before encoding.

    Returns ``(bad, handled)``: ``bad[reason]`` is a per-object mask of values that cannot be
    tokenized (reasons ``"infinite T.f"`` and ``"out-of-range T.f"``: a continuous feature more
    than :data:`MAX_STANDARDISED` standard deviations from the training mean); ``handled`` counts
    values that are tokenized by the documented policy of ``features.py``: ``"missing"`` (NaN /
    None, and categorical values that are no valid class index -> encoded as missing) and
    ``"clipped"`` (negative values of log-transformed features -> 0; tagger scores outside
    [0, 1] -> clipped to the interval).
    """
    from hep_tokenizers.schema import Kind

    bad: dict[str, np.ndarray] = {}
    handled: dict[str, dict[str, int]] = {"missing": {}, "clipped": {}}
    stats = transform.stats.get(otype.name, {})
    for f in otype.features:
        col = cols.get(f.name)
        if col is None or not len(col):
            continue
        key = f"{otype.name}.{f.name}"
        inf = np.isinf(col)
        if inf.any():
            bad[f"infinite {key}"] = inf
        nan = np.isnan(col)
        with np.errstate(invalid="ignore", over="ignore"):
            if f.kind is Kind.CONTINUOUS:
                s = stats.get(f.name)
                x = np.where(np.isfinite(col), col, 0.0)
                t = np.log(np.maximum(x, 0.0) + f.offset + 1e-6) if f.transform == "log" else x
                if s is not None:
                    far = np.abs((t - s.mean) / s.std) > MAX_STANDARDISED
                    if far.any():
                        bad[f"out-of-range {key}"] = far
                if f.transform == "log":
                    n_clip = int(np.count_nonzero(col < 0))
                    if n_clip:
                        handled["clipped"][key] = n_clip
            elif f.kind is Kind.TAGGER:
                n_clip = int(np.count_nonzero((col < 0) | (col > 1)))
                if n_clip:
                    handled["clipped"][key] = n_clip
            elif f.kind is Kind.CATEGORICAL:
                invalid = np.isfinite(col) & ((col < 0) | (col >= f.n_classes) | (col != np.round(col)))
                nan = nan | invalid
        n_nan = int(np.count_nonzero(nan))
        if n_nan:
            handled["missing"][key] = n_nan
    return bad, handled


def _canonical_sha256(obj: Any) -> str:
    """sha256 of a JSON value in canonical form (sorted keys, no spaces): independent of indentation."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


CONFIG_SHA_KEY = "config_sha256"


def _to_numpy(x: Any) -> np.ndarray:
    """Tensor / array / (ragged) nested list -> numpy; ragged lists are padded with ``[PAD]``."""
    if hasattr(x, "detach"):
        return x.detach().cpu().numpy()
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, (list, tuple)) and x and isinstance(x[0], (list, tuple, np.ndarray)) or (
        isinstance(x, (list, tuple)) and x and hasattr(x[0], "detach")
    ):
        rows = [np.asarray(_to_numpy(r), dtype=np.int64).ravel() for r in x]
        width = max((len(r) for r in rows), default=0)
        out = np.full((len(rows), width), PAD_ID, dtype=np.int64)
        for i, r in enumerate(rows):  # conversion of user lists only; not a hot path
            out[i, : len(r)] = r
        return out
    return np.asarray(x)


class EventTokenizer(PreTrainedTokenizerBase):
    """Tokenizer of collider events built on an exported residual-VQ model.

    Build with :meth:`from_pretrained` (a saved folder or hub id) or :meth:`from_export`
    (the output folder of ``hep-tok train-tokenizer``). Call it on an awkward event array
    (``hep_tokenizers.read_events``), a list of event dicts or one event dict.
    """

    vocab_files_names = {
        "event_tokenizer_file": EVENT_TOKENIZER_FILE,
        "rvq_config_file": RVQ_CONFIG_FILE,
        "rvq_tensors_file": RVQ_TENSORS_FILE,
    }
    model_input_names = ["input_ids", "token_type_ids", "attention_mask"]
    padding_side = "right"
    truncation_side = "right"
    _auto_class = "AutoTokenizer"
    is_fast = False

    def __init__(
        self,
        event_tokenizer_file: str | os.PathLike | None = None,
        rvq_config_file: str | os.PathLike | None = None,
        rvq_tensors_file: str | os.PathLike | None = None,
        **kwargs: Any,
    ) -> None:
        for key in ("is_local", "local_files_only", "tokenizer_file", "auto_map", "added_tokens_decoder"):
            kwargs.pop(key, None)
        where = kwargs.get("name_or_path") or (Path(rvq_config_file).parent if rvq_config_file else "?")
        for name, path in ((RVQ_CONFIG_FILE, rvq_config_file), (RVQ_TENSORS_FILE, rvq_tensors_file)):
            if path is None or not Path(path).is_file():
                raise TokenizerArtifactError(f"tokenizer {where}: required file {name} is missing")
        cfg_dir, tens_dir = Path(rvq_config_file).parent, Path(rvq_tensors_file).parent
        if cfg_dir.resolve() != tens_dir.resolve() and cfg_dir != tens_dir:
            raise TokenizerArtifactError(f"tokenizer {where}: {RVQ_CONFIG_FILE} and {RVQ_TENSORS_FILE} are in different folders")
        self.export_dir = cfg_dir
        self.export = load_export(cfg_dir)
        self.transform = getattr(self.export, "transform", None) or self.export.features
        self.schema = self.transform.schema
        self.rvq_config: dict[str, Any] = self.export.config
        models = self.rvq_config.get("models", {})
        sizes: dict[str, list[int]] = {}
        for otype in self.schema.all_types:
            if otype.name not in models or otype.name not in self.export.codecs:
                raise TokenizerArtifactError(f"tokenizer {where}: {RVQ_CONFIG_FILE} has no model for object type {otype.name!r}")
            sizes[otype.name] = [int(k) for k in models[otype.name]["quantizer"]["codebook_sizes"]]
        self.layout = VocabLayout.from_codebook_sizes(self.schema, sizes)
        self.event_config: dict[str, Any] | None = None
        if event_tokenizer_file is not None:
            self.event_config = self._check_event_config(Path(event_tokenizer_file), where)
        elif kwargs.get("_require_event_config"):
            raise TokenizerArtifactError(f"tokenizer {where}: required file {EVENT_TOKENIZER_FILE} is missing")
        kwargs.pop("_require_event_config", None)

        specials = dict(zip(("pad_token", "unk_token", "cls_token", "sep_token", "mask_token"), SPECIAL_TOKENS))
        for key, value in specials.items():
            given = kwargs.setdefault(key, value)
            if str(given) != value:
                raise TokenizerArtifactError(f"tokenizer {where}: {key}={str(given)!r} is not supported; it must be {value!r}")
        kwargs.setdefault("model_max_length", DEFAULT_MAX_LENGTH)
        self._vocab_cache: dict[str, int] | None = None
        self.last_truncation_stats: dict[str, int] = {}
        self.last_decode_stats: dict[str, int] = {}
        #: values handled by policy in the last encode: {"missing": {"T.f": n}, "clipped": {"T.f": n}}
        self.last_input_stats: dict[str, dict[str, int]] = {"missing": {}, "clipped": {}}
        super().__init__(**kwargs)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_export(cls, export_dir: str | os.PathLike, **kwargs: Any) -> "EventTokenizer":
        """Build from an RVQ export folder (``rvq_config.json`` + ``rvq.safetensors``)."""
        d = Path(export_dir)
        if not d.is_dir():
            raise TokenizerArtifactError(f"export folder {d} does not exist")
        return cls(
            rvq_config_file=d / RVQ_CONFIG_FILE,
            rvq_tensors_file=d / RVQ_TENSORS_FILE,
            name_or_path=kwargs.pop("name_or_path", str(d)),
            **kwargs,
        )

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *args: Any, **kwargs: Any) -> "EventTokenizer":
        """Load a saved tokenizer from a folder or a hub id (through the huggingface_hub cache).

        Hub ids honour ``HF_HUB_OFFLINE`` / ``local_files_only=True`` / ``cache_dir`` as usual.
        """
        path = Path(pretrained_model_name_or_path)
        if path.is_dir():
            missing = [n for n in (EVENT_TOKENIZER_FILE, RVQ_CONFIG_FILE, RVQ_TENSORS_FILE) if not (path / n).is_file()]
            if missing:
                raise TokenizerArtifactError(f"tokenizer folder {path} lacks {', '.join(missing)}")
        kwargs["_require_event_config"] = True
        return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)

    def _check_event_config(self, path: Path, where: Any) -> dict[str, Any]:
        if not path.is_file():
            raise TokenizerArtifactError(f"tokenizer {where}: required file {EVENT_TOKENIZER_FILE} is missing")
        try:
            cfg = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise TokenizerArtifactError(f"{path}: not valid JSON ({exc})") from exc
        if not isinstance(cfg, dict):
            raise TokenizerArtifactError(f"{path}: expected a JSON object")
        version = cfg.get("format_version")
        if not isinstance(version, int):
            raise TokenizerArtifactError(f"{path}: format_version missing or not an integer")
        if version > FORMAT_VERSION:
            raise TokenizerArtifactError(
                f"{path}: format_version {version} is newer than this hep-tokenizers ({PACKAGE_VERSION}) "
                f"supports ({FORMAT_VERSION}); upgrade hep-tokenizers"
            )
        try:
            saved_layout = VocabLayout.from_dict(cfg["vocabulary"])
        except (KeyError, TypeError) as exc:
            raise TokenizerArtifactError(f"{path}: vocabulary section missing or malformed ({exc})") from exc
        except ValueError as exc:
            raise TokenizerArtifactError(f"{path}: {exc}") from exc
        if saved_layout.blocks != self.layout.blocks:
            raise TokenizerArtifactError(
                f"{path}: vocabulary layout does not match the codebooks of {RVQ_CONFIG_FILE} "
                f"(vocab_size {saved_layout.vocab_size} vs {self.layout.vocab_size})"
            )
        if cfg.get("schema") != self.schema.to_dict():
            raise TokenizerArtifactError(f"{path}: schema differs from the one in {RVQ_CONFIG_FILE}")
        want = cfg.get("files", {}).get(RVQ_TENSORS_FILE, {}).get("sha256")
        have = self.rvq_config.get("tensor_sha256")
        if want is not None and have is not None and want != have:
            raise TokenizerArtifactError(f"{path}: sha256 of {RVQ_TENSORS_FILE} differs from {RVQ_CONFIG_FILE}")
        # checksums of the JSON files (artifacts saved before they were recorded have none)
        if CONFIG_SHA_KEY in cfg:
            body = {k: v for k, v in cfg.items() if k != CONFIG_SHA_KEY}
            if _canonical_sha256(body) != cfg[CONFIG_SHA_KEY]:
                raise TokenizerArtifactError(
                    f"{path}: content does not match its {CONFIG_SHA_KEY} (the file was edited or is corrupt)"
                )
        want_cfg = cfg.get("files", {}).get(RVQ_CONFIG_FILE, {}).get("sha256")
        if want_cfg is not None:
            have_cfg = _canonical_sha256(self.rvq_config)
            if have_cfg != want_cfg:
                raise TokenizerArtifactError(
                    f"{path}: {RVQ_CONFIG_FILE} does not match the sha256 recorded here (the file was edited or is corrupt)"
                )
        return cfg

    # ------------------------------------------------------------------ vocabulary API
    @property
    def vocab_size(self) -> int:
        return self.layout.vocab_size

    def __len__(self) -> int:
        return self.layout.vocab_size

    @property
    def n_levels(self) -> dict[str, int]:
        """Quantizer levels per object type."""
        return {t: self.layout.n_levels(t) for t in self.layout.type_names()}

    @property
    def type_vocab_size(self) -> int:
        """Size a model's token-type embedding needs (``BertConfig.type_vocab_size``)."""
        return max(t.token_type_id for t in self.schema.all_types) + 1

    def get_vocab(self) -> dict[str, int]:
        if self._vocab_cache is None:
            self._vocab_cache = {name: i for i, name in enumerate(self.layout.names())}
        return dict(self._vocab_cache)

    def _convert_token_to_id_with_added_voc(self, token: str) -> int:
        tid = self.layout.token_id(str(token))
        return UNK_ID if tid is None else tid

    def _convert_token_to_id(self, token: str) -> int:
        return self._convert_token_to_id_with_added_voc(token)

    def convert_ids_to_tokens(self, ids: int | Sequence[int] | Any, skip_special_tokens: bool = False) -> str | list[str]:
        if isinstance(ids, (int, np.integer)):
            return self.layout.token_name(int(ids))
        arr = _to_numpy(ids).ravel().astype(np.int64)
        return [self.layout.token_name(i) for i in arr if not (skip_special_tokens and i < len(SPECIAL_TOKENS))]

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        return " ".join(tokens)

    def _decode(self, token_ids: int | list[int], skip_special_tokens: bool = False, **kwargs: Any) -> str:
        if isinstance(token_ids, int):
            token_ids = [token_ids]
        toks = self.convert_ids_to_tokens(token_ids, skip_special_tokens=skip_special_tokens)
        if not skip_special_tokens:
            # drop trailing padding only
            while toks and toks[-1] == SPECIAL_TOKENS[PAD_ID]:
                toks.pop()
        return self.convert_tokens_to_string(toks)

    def tokenize(self, text: Any, pair: Any = None, add_special_tokens: bool = False, **kwargs: Any) -> list[str]:
        """Token names of events (``tok.tokenize(event)`` -> ``['[CLS]', 'met_q0_17', ...]``)."""
        enc = self(text, padding=False, return_tensors=None)
        ids = enc["input_ids"]
        if ids and isinstance(ids[0], list):
            return [self.convert_ids_to_tokens(r) for r in ids]
        return self.convert_ids_to_tokens(ids)

    @property
    def added_tokens_decoder(self) -> dict[int, AddedToken]:
        return {i: AddedToken(t, special=True, normalized=False) for i, t in enumerate(SPECIAL_TOKENS)}

    @property
    def added_tokens_encoder(self) -> dict[str, int]:
        return {t: i for i, t in enumerate(SPECIAL_TOKENS)}

    def _add_tokens(self, new_tokens: Any, special_tokens: bool = False) -> int:
        raise NotImplementedError("EventTokenizer has a fixed vocabulary (codebook ids); tokens cannot be added")

    def get_special_tokens_mask(
        self, token_ids_0: Sequence[int], token_ids_1: Sequence[int] | None = None, already_has_special_tokens: bool = False
    ) -> list[int]:
        """1 for special tokens ([PAD] [UNK] [CLS] [SEP] [MASK]), 0 for object tokens.

        Event sequences always carry their special tokens, so both modes give the same mask.
        """
        if token_ids_1 is not None:
            raise ValueError("EventTokenizer sequences are single events; token_ids_1 must be None")
        return (np.asarray(token_ids_0, dtype=np.int64) < len(SPECIAL_TOKENS)).astype(int).tolist()

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        return 1 + len(self.schema.groups)

    # ------------------------------------------------------------------ encoding
    @staticmethod
    def _as_events(events: Any) -> tuple[ak.Array, bool]:
        """Normalise the input to an ``ak.Array`` of events; second value: was one event given."""
        if isinstance(events, ak.Array):
            return events, False
        if isinstance(events, ak.Record):
            layout = events.layout
            return ak.Array(layout.array[layout.at : layout.at + 1]), True
        if isinstance(events, Mapping):
            return ak.from_iter([dict(events)]), True
        if isinstance(events, (list, tuple)):
            if not all(isinstance(e, Mapping) for e in events):
                raise TypeError("a list input must hold event dicts (fields electrons, muons, ..., met)")
            return ak.from_iter(list(events)) if events else ak.Array([]), False
        raise TypeError(
            f"EventTokenizer takes an awkward event array, a list of event dicts or one event dict, not {type(events).__name__}"
        )

    def _type_columns(self, events: ak.Array, otype: ObjectType) -> tuple[dict[str, np.ndarray], np.ndarray]:
        fields = events.fields
        if otype.name not in fields:
            raise KeyError(f"events have no field {otype.name!r}; an event needs {[t.name for t in self.schema.all_types]} (has {fields})")
        if not otype.per_event:
            counts = ak.to_numpy(ak.fill_none(ak.num(events[otype.name], axis=1), 0)).astype(np.int64)
            if counts.sum() == 0:  # e.g. a dict with only empty lists: awkward knows no fields
                return {f.name: np.zeros(0) for f in otype.features}, counts
        cols, counts = object_columns(events, otype)
        bad, handled = value_problems(self.transform, otype, cols)
        for reason, mask in bad.items():
            first = int(np.nonzero(mask)[0][0])
            event = int(np.searchsorted(np.cumsum(counts), first, side="right"))
            key = reason.split(" ", 1)[1]
            value = cols[key.split(".", 1)[1]][first]
            what = "infinite" if reason.startswith("infinite") else (
                f"{float(value):g}, more than {MAX_STANDARDISED:g} training standard deviations from the training mean"
            )
            raise ValueError(f"{key} is {what} in event {event} (object {first} of the batch); such events cannot be tokenized")
        for kind, per_feature in handled.items():
            for key, n in per_feature.items():
                self.last_input_stats[kind][key] = self.last_input_stats[kind].get(key, 0) + n
        return cols, counts

    def object_codes(self, events: Any) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Per type ``(codes (n_objects, n_levels), counts per event, pt per object)``.

        One ``ObjectCodec.encode`` call per object type for the whole batch.
        """
        events, _ = self._as_events(events)
        self.last_input_stats = {"missing": {}, "clipped": {}}
        out: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        for otype in self.schema.all_types:
            cols, counts = self._type_columns(events, otype)
            n_levels = self.layout.n_levels(otype.name)
            n_obj = int(counts.sum())
            if n_obj:
                inputs = self.transform.input_matrix(otype.name, self.transform.target_matrix(otype.name, cols))
                codes = np.asarray(self.export.codecs[otype.name].encode(inputs), dtype=np.int64)
            else:
                codes = np.zeros((0, n_levels), dtype=np.int64)
            pt = cols["pt"] if "pt" in cols else np.zeros(n_obj)
            out[otype.name] = (codes, counts, pt)
        if any(self.last_input_stats.values()):
            logger.info("tokenized with handled values (missing -> encoded as missing, clipped): %s", self.last_input_stats)
        return out

    def invalid_events(self, events: Any) -> dict[str, np.ndarray]:
        """Per reason (``"missing field T"``, ``"infinite T.f"``, ``"out-of-range T.f"``) a mask of
        the events that :meth:`encode_events` would refuse; ``hep-tok tokenize`` drops and counts them."""
        events, _ = self._as_events(events)
        n = len(events)
        reasons: dict[str, np.ndarray] = {}
        for otype in self.schema.all_types:
            if otype.name not in events.fields:
                reasons[f"missing field {otype.name}"] = np.ones(n, dtype=bool)
                continue
            if not otype.per_event:
                counts = ak.to_numpy(ak.fill_none(ak.num(events[otype.name], axis=1), 0))
                if counts.sum() == 0:
                    continue
            cols, counts = object_columns(events, otype)
            ev = np.repeat(np.arange(n), counts)
            bad, _ = value_problems(self.transform, otype, cols)
            for reason, mask in bad.items():
                m = np.zeros(n, dtype=bool)
                m[ev[mask]] = True
                reasons[reason] = m
        return reasons

    def encode_events(self, events: Any, max_length: int | None = None) -> SequenceBatch:
        """Events -> ragged :class:`~hep_tokenizers.sequence.SequenceBatch` (no padding).

        ``max_length`` truncates (whole objects, lowest pT first); ``None`` keeps everything.
        Updates :attr:`last_truncation_stats`.
        """
        per_type = self.object_codes(events)
        batch = assemble(
            self.layout,
            self.schema,
            {k: v[0] for k, v in per_type.items()},
            {k: v[1] for k, v in per_type.items()},
            {k: v[2] for k, v in per_type.items()},
            max_length=max_length,
        )
        self.last_truncation_stats = {
            "n_events": len(batch),
            "n_events_truncated": int((batch.n_truncated_objects > 0).sum()),
            "n_objects": int(batch.n_objects.sum()),
            "n_objects_truncated": int(batch.n_truncated_objects.sum()),
            "max_length": -1 if max_length is None else int(max_length),
        }
        if batch.n_truncated_objects.any():
            logger.warning(
                "truncated %d objects in %d of %d events to fit max_length=%s (lowest pT dropped first)",
                self.last_truncation_stats["n_objects_truncated"],
                self.last_truncation_stats["n_events_truncated"],
                len(batch),
                max_length,
            )
        return batch

    def __call__(
        self,
        events: Any,
        padding: bool | str = False,
        truncation: bool | str | None = None,
        max_length: int | None = None,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_tensors: str | None = None,
        return_attention_mask: bool = True,
        return_token_type_ids: bool = True,
        return_level_ids: bool = True,
        return_truncation: bool = True,
        return_special_tokens_mask: bool = False,
        return_length: bool = False,
        verbose: bool = True,
        **kwargs: Any,
    ) -> BatchEncoding:
        """Tokenize events.

        Args:
            events: ``ak.Array`` of events, a list of event dicts, or one event dict / ``ak.Record``
                (then lists come back without the batch axis, as for one text in HF).
            padding: ``False``/``"do_not_pad"``, ``True``/``"longest"`` or ``"max_length"``.
            truncation: ``True`` drops whole objects (lowest pT first, across groups) until each
                sequence fits ``max_length`` (default ``model_max_length``, 128); counted in the
                ``n_truncated_objects`` field and :attr:`last_truncation_stats`. ``None``/``False``:
                no truncation (a warning names events longer than ``model_max_length``).
            return_tensors: ``None`` (lists), ``"np"`` or ``"pt"``.

        Returns ``BatchEncoding`` with ``input_ids``, ``token_type_ids``, ``attention_mask``,
        ``level_ids`` and ``n_truncated_objects`` (per event), optionally
        ``special_tokens_mask`` and ``length``. Feed a model with
        ``{k: enc[k] for k in tok.model_input_names}``.
        """
        if kwargs:
            unknown = [k for k in kwargs if k not in ("add_special_tokens", "is_split_into_words", "stride", "text_pair")]
            if unknown:
                raise TypeError(f"EventTokenizer.__call__ got unexpected arguments {unknown}")
        ev, single = self._as_events(events)
        truncate = truncation not in (None, False, "do_not_truncate")
        limit = max_length if max_length is not None else self.model_max_length
        batch = self.encode_events(ev, max_length=limit if truncate else None)
        lengths = batch.lengths
        if not truncate and verbose and len(lengths) and lengths.max() > self.model_max_length:
            logger.warning(
                "%d events are longer than model_max_length=%d (longest %d); pass truncation=True to drop "
                "their lowest-pT objects",
                int((lengths > self.model_max_length).sum()),
                self.model_max_length,
                int(lengths.max()),
            )

        if padding in (True, "longest"):
            pad_len: int | None = int(lengths.max()) if len(lengths) else 0
        elif padding == "max_length":
            pad_len = int(limit)
        elif padding in (False, None, "do_not_pad"):
            pad_len = None
        else:
            raise ValueError(f"padding must be True, False, 'longest', 'max_length' or 'do_not_pad', not {padding!r}")
        if pad_len is not None and pad_to_multiple_of:
            pad_len = -(-pad_len // pad_to_multiple_of) * pad_to_multiple_of
        side = padding_side or self.padding_side

        fields = [("input_ids", PAD_ID)]
        if return_token_type_ids:
            fields.append(("token_type_ids", SPECIAL_TOKEN_TYPE_ID))
        if return_level_ids:
            fields.append(("level_ids", SPECIAL_LEVEL_ID))
        data: dict[str, Any] = {}
        if pad_len is not None:
            for name, pad in fields:
                data[name] = batch.to_padded(name, pad_len, pad, side)
            if return_attention_mask:
                data["attention_mask"] = batch.attention_mask(pad_len, side)
            if return_special_tokens_mask:
                data["special_tokens_mask"] = (data["input_ids"] < len(SPECIAL_TOKENS)).astype(np.int64)
            if return_tensors is None:
                data = {k: v.tolist() for k, v in data.items()}
        else:
            if return_tensors is not None and len(lengths) and (lengths != lengths[0]).any():
                raise ValueError(
                    f"events have different lengths ({int(lengths.min())}..{int(lengths.max())} tokens): "
                    f"pass padding=True to get {return_tensors!r} tensors"
                )
            for name, _ in fields:
                data[name] = batch.to_lists(name)
            if return_attention_mask:
                data["attention_mask"] = [[1] * int(n) for n in lengths]
            if return_special_tokens_mask:
                data["special_tokens_mask"] = [[int(i < len(SPECIAL_TOKENS)) for i in row] for row in data["input_ids"]]
            if return_tensors is not None:
                data = {k: np.asarray(v, dtype=np.int64).reshape(len(lengths), -1) for k, v in data.items()}
        if return_truncation:
            data["n_truncated_objects"] = batch.n_truncated_objects if return_tensors else batch.n_truncated_objects.tolist()
        if return_length:
            data["length"] = lengths if return_tensors else lengths.tolist()
        if single:
            data = {k: v[0] for k, v in data.items()}
            return BatchEncoding(data, tensor_type=return_tensors, prepend_batch_axis=return_tensors is not None)
        return BatchEncoding(data, tensor_type=return_tensors)

    def _pad(self, encoded_inputs: Any, max_length: int | None = None, padding_strategy: Any = None, **kwargs: Any) -> dict:
        """HF padding, extended to ``level_ids`` (padded with -1)."""
        n_before = len(encoded_inputs[self.model_input_names[0]])
        side = kwargs.get("padding_side") or self.padding_side
        out = super()._pad(encoded_inputs, max_length=max_length, padding_strategy=padding_strategy, **kwargs)
        diff = len(out[self.model_input_names[0]]) - n_before
        if diff and "level_ids" in out:
            levels = list(out["level_ids"])
            out["level_ids"] = levels + [SPECIAL_LEVEL_ID] * diff if side == "right" else [SPECIAL_LEVEL_ID] * diff + levels
        return out

    # ------------------------------------------------------------------ decoding
    def decode_events(self, input_ids: Any, attention_mask: Any = None) -> ak.Array:
        """Token ids -> awkward array of reconstructed events in physics units.

        ``input_ids``: ``(n_events, length)`` tensor/array/lists (or one sequence). Padding
        (``attention_mask`` 0, or ``[PAD]`` when no mask is given) and special tokens are skipped.
        Fields: ``met`` (record, ``None`` where the sequence has no complete met object),
        ``electrons`` ... ``jets`` (lists of records in sequence order) with the schema's
        features as the readers name them. Objects with an incomplete set of level tokens are
        not decoded; their count is in :attr:`last_decode_stats`.
        """
        ids = _to_numpy(input_ids).astype(np.int64)
        if ids.ndim == 1:
            ids = ids[None, :]
        mask = ids != PAD_ID if attention_mask is None else _to_numpy(attention_mask).reshape(ids.shape).astype(bool)
        parsed = parse_ids(self.layout, ids, mask)
        n = parsed.n_events
        fields: dict[str, ak.Array] = {}
        n_extra_blocks = 0
        for otype in self.schema.all_types:
            codes = parsed.codes[otype.name]
            event = parsed.event_index[otype.name]
            if len(codes):
                heads = np.asarray(self.export.codecs[otype.name].decode(codes))
                phys = self.transform.to_physical(otype.name, heads)
            else:
                phys = {f.name: np.zeros(0, dtype=np.float32) for f in otype.features}
            counts = np.bincount(event, minlength=n)
            jag = ak.unflatten(ak.zip({k: np.asarray(v) for k, v in phys.items()}, depth_limit=1), counts)
            if otype.per_event:
                n_extra_blocks += int(np.maximum(counts - 1, 0).sum())
                fields[otype.name] = ak.firsts(jag, axis=1)
            else:
                fields[otype.name] = jag
        self.last_decode_stats = {
            "n_events": n,
            "n_incomplete_objects": parsed.n_incomplete_objects,
            "n_stray_tokens": parsed.n_stray_tokens,
            "n_extra_event_blocks": n_extra_blocks,
        }
        if parsed.n_incomplete_objects or n_extra_blocks:
            logger.warning("decode_events: %s", self.last_decode_stats)
        return ak.zip(fields, depth_limit=1)

    # ------------------------------------------------------------------ saving
    def _event_config(self) -> dict[str, Any]:
        sha = self.rvq_config.get("tensor_sha256") or _sha256(self.export_dir / RVQ_TENSORS_FILE)
        n_levels = {t.name: self.layout.n_levels(t.name) for t in self.schema.all_types}
        return {
            "format_version": FORMAT_VERSION,
            "package": "hep-tokenizers",
            "package_version": PACKAGE_VERSION,
            "rvq_format_version": self.rvq_config.get("format_version"),
            "schema": self.schema.to_dict(),
            "normalisation": self.transform.to_dict()["stats"],
            "vocabulary": self.layout.to_dict(),
            "sequence": {
                "layout": "[CLS] <event blocks> ([SEP] <group objects, pT-descending>) per group",
                "event_blocks": [t.name for t in self.schema.event_blocks],
                "groups": [t.name for t in self.schema.groups],
                "n_levels": n_levels,
                "fixed_length": fixed_length(self.layout, self.schema),
                "model_max_length": int(self.model_max_length),
                "truncation": "whole objects, lowest pT first across groups; counted in n_truncated_objects",
                "token_type_ids": {"special": SPECIAL_TOKEN_TYPE_ID, **{t.name: t.token_type_id for t in self.schema.all_types}},
                "level_ids": {"special": SPECIAL_LEVEL_ID, "object": "quantizer level 0..n_levels-1"},
            },
            "files": {RVQ_CONFIG_FILE: {"sha256": _canonical_sha256(self.rvq_config)}, RVQ_TENSORS_FILE: {"sha256": sha}},
        }

    def save_vocabulary(self, save_directory: str, filename_prefix: str | None = None) -> tuple[str, ...]:
        """Write ``event_tokenizer.json``, the RVQ export files, ``special_tokens_map.json`` and ``README.md``."""
        out = Path(save_directory)
        out.mkdir(parents=True, exist_ok=True)
        written: list[str] = []
        for name in (RVQ_CONFIG_FILE, RVQ_TENSORS_FILE):
            src, dst = self.export_dir / name, out / name
            if not dst.exists() or not src.samefile(dst):
                tmp = dst.with_name(dst.name + ".tmp")
                shutil.copyfile(src, tmp)
                os.replace(tmp, dst)
            written.append(str(dst))
        cfg_path = out / EVENT_TOKENIZER_FILE
        cfg = self._event_config()
        cfg[CONFIG_SHA_KEY] = _canonical_sha256(cfg)
        tmp = cfg_path.with_name(cfg_path.name + ".tmp")
        tmp.write_text(json.dumps(cfg, indent=2) + "\n")
        os.replace(tmp, cfg_path)
        written.append(str(cfg_path))
        stm = out / "special_tokens_map.json"
        stm.write_text(json.dumps(self.special_tokens_map, indent=2) + "\n")
        written.append(str(stm))
        card = out / "README.md"
        card.write_text(self.model_card(repo_id=getattr(self, "_card_repo_id", None)))
        written.append(str(card))
        return tuple(written)

    def _save_pretrained(self, save_directory: Any, file_names: tuple[str, ...], **kwargs: Any) -> tuple[str, ...]:
        files = super()._save_pretrained(save_directory, file_names, **kwargs)
        return tuple(f for f in files if Path(f).is_file())  # HF lists added_tokens.json even when not written

    def save_pretrained(self, save_directory: str | os.PathLike, *args: Any, push_to_hub: bool = False, **kwargs: Any) -> tuple[str, ...]:
        """Write the artifact folder (see the module docstring); ``push_to_hub=True`` also uploads it."""
        if push_to_hub:
            repo_id = kwargs.pop("repo_id", Path(save_directory).name)
            files = super().save_pretrained(save_directory, *args, **kwargs)
            self.push_to_hub(repo_id, folder=save_directory, commit_message=kwargs.get("commit_message"))
            return files
        return super().save_pretrained(save_directory, *args, **kwargs)

    def push_to_hub(
        self,
        repo_id: str,
        *,
        commit_message: str | None = None,
        commit_description: str | None = None,
        private: bool | None = None,
        token: bool | str | None = None,
        revision: str | None = None,
        create_pr: bool = False,
        api: Any = None,
        folder: str | os.PathLike | None = None,
        **kwargs: Any,
    ) -> Any:
        """Save into a temporary folder (model card named after ``repo_id``) and upload it.

        Uses ``huggingface_hub.HfApi.create_repo`` + ``upload_folder`` (pass ``api=HfApi(endpoint=...)``
        for another endpoint). ``folder``: upload this already-saved folder instead.
        Returns the ``CommitInfo``.
        """
        from huggingface_hub import HfApi

        api = api or HfApi(token=token)
        with tempfile.TemporaryDirectory(prefix="hep-tok-push-") as tmp:
            if folder is None:
                self._card_repo_id = repo_id
                try:
                    self.save_pretrained(tmp)
                finally:
                    self._card_repo_id = None
                folder = tmp
            repo = api.create_repo(repo_id, private=private, exist_ok=True, token=token)
            return api.upload_folder(
                repo_id=getattr(repo, "repo_id", repo_id),
                folder_path=str(folder),
                commit_message=commit_message or "Upload EventTokenizer",
                commit_description=commit_description,
                revision=revision,
                create_pr=create_pr,
                token=token,
            )

    # ------------------------------------------------------------------ model card
    def model_card(self, repo_id: str | None = None) -> str:
        """The README.md model card: ``model_cards/event_tokenizer.md`` filled from the export."""
        values = _card_values(self, repo_id)
        text = _card_template()
        for key, value in values.items():
            text = text.replace("{{" + key + "}}", str(value))
        return text


# ---------------------------------------------------------------------- model card helpers
_FALLBACK_CARD = """# {{name}}

Residual-VQ event tokenizer made with hep-tokenizers {{package_version}}.

## Vocabulary ({{vocab_size}} ids)

{{vocabulary_table}}

## Configuration

{{config_table}}

## Training data

{{training_data}}

## Codebook health

{{codebook_health}}

## Reconstruction

{{reconstruction}}

## Other training information

{{training_other}}
"""


def _card_template() -> str:
    """``model_cards/event_tokenizer.md`` of the source tree; a built-in minimal card if absent."""
    spec = importlib.util.find_spec("hep_tokenizers")
    roots = [Path(p).parent for p in (spec.submodule_search_locations or [])] if spec else []
    for root in roots:
        path = root / "model_cards" / MODEL_CARD_TEMPLATE
        if path.is_file():
            return path.read_text()
    logger.warning("model card template %s not found; writing a minimal card", MODEL_CARD_TEMPLATE)
    return _FALLBACK_CARD


def _md_value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)) and len(v) > 8:
        return ", ".join(_md_value(x) for x in v[:8]) + f", ... ({len(v)} values)"
    if isinstance(v, (list, tuple)):
        return ", ".join(_md_value(x) for x in v)
    if isinstance(v, dict):
        return "; ".join(f"{k}: {_md_value(x)}" for k, x in v.items())
    return str(v).replace("|", "\\|").replace("\n", " ")


def _md_section(value: Any) -> str:
    """A free-form JSON value as markdown: dict of dicts -> table, dict -> bullets."""
    if value is None or value == {} or value == []:
        return "_Not recorded in the export._"
    if isinstance(value, dict):
        rows = {k: v for k, v in value.items() if isinstance(v, dict)}
        if rows and len(rows) == len(value):
            cols = list(dict.fromkeys(c for v in rows.values() for c in v))
            if all(not isinstance(x, dict) for v in rows.values() for x in v.values()):
                lines = ["| | " + " | ".join(map(str, cols)) + " |", "|---" * (len(cols) + 1) + "|"]
                for k, v in rows.items():
                    lines.append(f"| {k} | " + " | ".join(_md_value(v.get(c, "")) for c in cols) + " |")
                return "\n".join(lines)
            return "\n\n".join(f"**{k}**\n\n{_md_section(v)}" for k, v in rows.items())
        return "\n".join(f"- **{k}**: {_md_value(v)}" for k, v in value.items())
    if isinstance(value, list):
        return "\n".join(f"- {_md_value(v)}" for v in value)
    return str(value)


_CARD_KEYS = {
    "training_data": ("data", "training_data", "dataset", "datasets", "files"),
    "codebook_health": ("health", "codebook_health", "codebooks"),
    "reconstruction": ("reconstruction", "metrics", "reconstruction_metrics", "eval", "evaluation"),
}


def _card_values(tok: "EventTokenizer", repo_id: str | None) -> dict[str, Any]:
    training = tok.rvq_config.get("training") or {}
    sections: dict[str, Any] = {}
    used: set[str] = set()
    for slot, keys in _CARD_KEYS.items():
        found = {k: training[k] for k in keys if isinstance(training, dict) and k in training}
        used.update(found)
        sections[slot] = _md_section(found if len(found) > 1 else next(iter(found.values()), None))
    other = {k: v for k, v in training.items() if k not in used} if isinstance(training, dict) else training
    vocab_lines = ["| ids | type | level | token names |", "| --- | --- | --- | --- |"]
    vocab_lines.append(f"| 0-{len(SPECIAL_TOKENS) - 1} | special | - | {' '.join(SPECIAL_TOKENS)} |")
    for b in tok.layout.blocks:
        vocab_lines.append(
            f"| {b.offset}-{b.offset + b.size - 1} | {b.type_name} | {b.level} | `{b.prefix}_q{b.level}_0` ... `{b.prefix}_q{b.level}_{b.size - 1}` |"
        )
    cfg_lines = [
        "| type | features | input dim | latent dim | levels x codes | code dim | distance | token type |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    models = tok.rvq_config.get("models", {})
    for t in tok.schema.all_types:
        m = models.get(t.name, {})
        q = m.get("quantizer", {})
        sizes = q.get("codebook_sizes", [])
        levels = f"{len(sizes)} x {sizes[0]}" if sizes and len(set(sizes)) == 1 else " + ".join(map(str, sizes))
        cfg_lines.append(
            f"| {t.name} | {', '.join(t.feature_names)} | {m.get('input_dim', '?')} | {m.get('latent_dim', '?')} | "
            f"{levels} | {q.get('codebook_dim', '?')} | {q.get('distance', '?')} | {t.token_type_id} |"
        )
    name = repo_id or Path(str(tok.name_or_path or "event-tokenizer")).name or "event-tokenizer"
    return {
        "name": name,
        "repo_id": repo_id or "path/to/tokenizer",
        "package_version": PACKAGE_VERSION,
        "package_url": "https://pypi.org/project/hep-tokenizers/",
        "format_version": FORMAT_VERSION,
        "model_max_length": int(tok.model_max_length),
        "event_blocks": ", ".join(t.name for t in tok.schema.event_blocks),
        "groups": ", ".join(t.name for t in tok.schema.groups),
        "fixed_length": fixed_length(tok.layout, tok.schema),
        "vocab_size": tok.vocab_size,
        "vocabulary_table": "\n".join(vocab_lines),
        "config_table": "\n".join(cfg_lines),
        "tensor_sha256": tok.rvq_config.get("tensor_sha256", "?"),
        "training_other": _md_section(other),
        **sections,
    }


__all__ = ["EventTokenizer", "TokenizerArtifactError", "FORMAT_VERSION", "MAX_STANDARDISED", "value_problems"]
