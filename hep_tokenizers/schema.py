"""Object types, their features, and each feature's kind.

This module is the contract between the readers (``hep_tokenizers.io``), the feature
transforms, the RVQ models and the tokenizer. Every reader returns an awkward record
array whose fields follow :data:`DEFAULT_SCHEMA`:

``events.electrons``, ``events.muons``, ``events.taus``, ``events.photons``, ``events.jets``
    jagged records, one list per event, objects ordered by decreasing ``pt``; each holds at
    least the features below. Momenta and energies are in GeV, angles in radians.
``events.met``
    one record per event with ``pt``, ``phi`` and ``sumet`` (the event-level block).
``events.process`` / ``events.weight``
    optional per-event label (string) and weight, where the file has them.

A feature a format does not provide is present as an awkward *option* (``None``) value:
the array stores a mask and no made-up number (``ak.is_none`` gives the mask). Extra
fields not in the schema (``truth_flavour``, ...) may be present and are ignored by the
tokenizer.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from typing import Any


class Kind(str, enum.Enum):
    """How a feature is modelled: each kind has its own decoder head and loss."""

    CONTINUOUS = "continuous"  # regression (L1 / Huber on normalised values)
    TAGGER = "tagger"  # score in [0, 1] (b-tag, tau-ID); sigmoid head, BCE on the score
    BINARY = "binary"  # 0/1 flag (charge sign, ID or isolation flags); BCE
    CATEGORICAL = "categorical"  # small integer class; cross-entropy


@dataclass(frozen=True)
class Feature:
    """One feature of an object type.

    ``transform`` is applied before standardisation: ``"log"`` is ``log(x + offset)`` for
    positive, wide-range quantities (pT, E, mass, isolation); ``"none"`` leaves the value;
    ``"sign"`` (binary features only) stores a physical +1/-1 value and models ``x > 0``.
    Binary flags are stored as booleans or 0/1; tagger scores as floats in [0, 1].
    Categorical features list their class names; the stored value is the class index.
    """

    name: str
    kind: Kind
    transform: str = "none"
    offset: float = 0.0
    classes: tuple[str, ...] = ()
    description: str = ""

    @property
    def n_classes(self) -> int:
        return len(self.classes) if self.kind is Kind.CATEGORICAL else 0

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["kind"] = self.kind.value
        d["classes"] = list(self.classes)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Feature":
        return cls(
            name=d["name"],
            kind=Kind(d["kind"]),
            transform=d.get("transform", "none"),
            offset=float(d.get("offset", 0.0)),
            classes=tuple(d.get("classes", ())),
            description=d.get("description", ""),
        )


@dataclass(frozen=True)
class ObjectType:
    """A group of objects (or the event-level block) with a fixed feature list.

    ``token_type_id`` is the value used in ``token_type_ids`` for this group's tokens
    (0 is reserved for special tokens). ``prefix`` names tokens, e.g. ``jet_q0_1234``.
    ``per_event`` is True for the event-level block (exactly one "object" per event).
    """

    name: str
    prefix: str
    token_type_id: int
    features: tuple[Feature, ...]
    per_event: bool = False

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    def feature(self, name: str) -> Feature:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(f"object type {self.name!r} has no feature {name!r}; it has {self.feature_names}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "prefix": self.prefix,
            "token_type_id": self.token_type_id,
            "per_event": self.per_event,
            "features": [f.to_dict() for f in self.features],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ObjectType":
        return cls(
            name=d["name"],
            prefix=d["prefix"],
            token_type_id=int(d["token_type_id"]),
            per_event=bool(d.get("per_event", False)),
            features=tuple(Feature.from_dict(f) for f in d["features"]),
        )


@dataclass(frozen=True)
class Schema:
    """The event-level block followed by the object groups, in sequence order."""

    event_blocks: tuple[ObjectType, ...]
    groups: tuple[ObjectType, ...]
    version: int = 1

    @property
    def all_types(self) -> tuple[ObjectType, ...]:
        return self.event_blocks + self.groups

    def __getitem__(self, name: str) -> ObjectType:
        for t in self.all_types:
            if t.name == name:
                return t
        raise KeyError(f"schema has no object type {name!r}; it has {[t.name for t in self.all_types]}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "event_blocks": [t.to_dict() for t in self.event_blocks],
            "groups": [t.to_dict() for t in self.groups],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Schema":
        return cls(
            version=int(d.get("version", 1)),
            event_blocks=tuple(ObjectType.from_dict(t) for t in d["event_blocks"]),
            groups=tuple(ObjectType.from_dict(t) for t in d["groups"]),
        )


C, T, B, K = Kind.CONTINUOUS, Kind.TAGGER, Kind.BINARY, Kind.CATEGORICAL

#: Working points of lepton identification (class index = tightest passed).
QUALITY_CLASSES = ("loose", "medium", "tight")
#: Tau decay modes (prongs x neutral pions), the classes ATLAS PanTau and CMS HPS share.
TAU_DECAY_MODES = ("1p0n", "1p1n", "1pXn", "3p0n", "3pXn")


def _kinematics(mass: bool = False) -> list[Feature]:
    feats = [
        Feature("pt", C, "log", 0.0, description="transverse momentum [GeV]"),
        Feature("eta", C, description="pseudorapidity"),
        Feature("phi", C, description="azimuth [rad], in (-pi, pi]"),
    ]
    if mass:
        feats.append(Feature("mass", C, "log", 1.0, description="invariant mass [GeV]"))
    return feats


MET = ObjectType(
    "met",
    "met",
    1,
    (
        Feature("pt", C, "log", 1.0, description="missing transverse momentum magnitude [GeV]"),
        Feature("phi", C, description="missing transverse momentum azimuth [rad]"),
        Feature("sumet", C, "log", 1.0, description="scalar sum of transverse energy [GeV]"),
    ),
    per_event=True,
)
ELECTRONS = ObjectType(
    "electrons",
    "ele",
    2,
    (
        *_kinematics(),
        Feature("charge", B, "sign", description="electric charge, +1 or -1 (modelled as the sign bit)"),
        Feature("isolation", C, "log", 0.01, description="relative track isolation (cone 0.2-0.3)"),
        Feature("quality", K, classes=QUALITY_CLASSES, description="tightest identification working point passed"),
    ),
)
MUONS = ObjectType(
    "muons",
    "mu",
    3,
    (
        *_kinematics(),
        Feature("charge", B, "sign", description="electric charge, +1 or -1 (modelled as the sign bit)"),
        Feature("isolation", C, "log", 0.01, description="relative track isolation (cone 0.3)"),
        Feature("quality", K, classes=QUALITY_CLASSES, description="tightest identification working point passed"),
    ),
)
TAUS = ObjectType(
    "taus",
    "tau",
    4,
    (
        *_kinematics(),
        Feature("charge", B, "sign", description="electric charge, +1 or -1 (modelled as the sign bit)"),
        Feature("id_score", T, description="tau identification score in [0, 1]"),
        Feature("decay_mode", K, classes=TAU_DECAY_MODES, description="reconstructed decay mode"),
    ),
)
PHOTONS = ObjectType(
    "photons",
    "gam",
    5,
    (
        *_kinematics(),
        Feature("isolation", C, "log", 0.01, description="relative calorimeter isolation"),
        Feature("tight_id", B, description="passes the tight identification working point"),
    ),
)
JETS = ObjectType(
    "jets",
    "jet",
    6,
    (
        *_kinematics(mass=True),
        Feature("btag", T, description="b-tagging score in [0, 1] (probability-like)"),
    ),
)

DEFAULT_SCHEMA = Schema(event_blocks=(MET,), groups=(ELECTRONS, MUONS, TAUS, PHOTONS, JETS))

#: Object groups in sequence order, as field names of the event array.
GROUP_NAMES: tuple[str, ...] = tuple(t.name for t in DEFAULT_SCHEMA.groups)

__all__ = [
    "Kind",
    "Feature",
    "ObjectType",
    "Schema",
    "DEFAULT_SCHEMA",
    "GROUP_NAMES",
    "QUALITY_CLASSES",
    "TAU_DECAY_MODES",
    "MET",
    "ELECTRONS",
    "MUONS",
    "TAUS",
    "PHOTONS",
    "JETS",
]
