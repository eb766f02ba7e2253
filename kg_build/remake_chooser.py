"""Learned choice among same-title movies (remakes, ReDial's mis-dated entries) for the entity linker.

Typed without a year, "contact" or "the fugitive" fits several KG movies with the same title. The
rules of :mod:`kg_build.linker` pick by a typed year, an era cue ("the original jumanji"), the dialogue
context and then ReDial **train** popularity. :class:`RemakeChooser` re-decides that pick with a
conditional logit over the candidates of the group, using what the dialogue says about the film:

* ``log_pop``: ``log1p`` of the film's popularity (train-split ``@``-mentions + KG degree / 1000);
* ``rule_pick``: the rules chose it; ``in_context``: linked earlier in the dialogue;
* ``year_gap``: ``|year - median year of the other movies in the dialogue so far and in the
  utterance|`` / 10 (capped at 3; 0 without years) -- "house of 1000 corpses ... dawn of the dead" is
  the 2004 film; ``no_year``: the entry has no year;
* ``persons`` / ``genres`` / ``decade``: ``log1p`` of the persons, genres and decades linked in the
  dialogue so far or in the utterance that are KG neighbours of the film ("the mask ... Jim Carrey");
* ``shared_persons``: ``log1p`` of the other discussed movies that share a person with it;
* ``old_cue`` / ``new_cue``: an era word anywhere in the utterance (:data:`~kg_build.lexicon.ERA_OLD_CUES`,
  ``ERA_NEW_CUES`` -- "classic", "the older one") and the film is the oldest / newest of its group;
* ``newest`` / ``oldest``: its rank in the group.

``score = w . x``; the highest-scoring candidate replaces the rule pick when it beats it by more than
``margin``. Trained by ``python -m kg_build.train_remakes`` (:mod:`kg_build.train_remakes`) on
benchmark-style typed turns of the ReDial **train** split; ``margin`` selected on **valid**.

Resource ``kg_build/resources/linker_remake_chooser.json`` (JSON, no pickle)::

    {"schema": "crwalker.linker_remake_chooser/1", "features": [...], "weights": [...],
     "margin": float, "training": {...}}
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_scripts.utils.io import read_json, write_json

SCHEMA = "crwalker.linker_remake_chooser/1"
#: The packaged model.
DEFAULT_PATH = Path(__file__).parent / "resources" / "linker_remake_chooser.json"
#: Feature names, in the order of :func:`remake_features`.
FEATURES: tuple[str, ...] = (
    "log_pop",
    "rule_pick",
    "in_context",
    "year_gap",
    "no_year",
    "persons",
    "genres",
    "decade",
    "shared_persons",
    "old_cue",
    "new_cue",
    "newest",
    "oldest",
)


@dataclass(frozen=True)
class RemakeFacts:
    """What the linker knows about one candidate of a same-title group."""

    log_pop: float
    rule_pick: bool
    in_context: bool
    year_gap: float  # |year - median context year| / 10, capped at 3 (0 when either is unknown)
    no_year: bool
    persons: int
    genres: int
    decade: int
    shared_persons: int
    old_cue: bool
    new_cue: bool
    newest: bool
    oldest: bool


def remake_features(f: RemakeFacts) -> list[float]:
    """Feature vector of a candidate (order of :data:`FEATURES`; no bias: a conditional logit)."""
    return [
        f.log_pop,
        float(f.rule_pick),
        float(f.in_context),
        f.year_gap,
        float(f.no_year),
        float(np.log1p(f.persons)),
        float(np.log1p(f.genres)),
        float(f.decade > 0),
        float(np.log1p(f.shared_persons)),
        float(f.old_cue and f.oldest),
        float(f.new_cue and f.newest),
        float(f.newest),
        float(f.oldest),
    ]


def fit_conditional_logit(groups: list[np.ndarray], positives: list[np.ndarray], l2: float = 1.0) -> np.ndarray:
    """Weights of a conditional logit: ``P(i | group) = softmax(X w)_i``, maximising the log of the
    probability mass of each group's positive candidates (several when ReDial duplicates count the same)
    minus ``l2 / 2 * |w|^2`` (L-BFGS, :func:`scipy.optimize.minimize`).

    Args:
        groups: One ``(n_i, d)`` feature matrix per choice.
        positives: One boolean ``(n_i,)`` mask per choice (at least one True).
        l2: Ridge penalty (summed loss).
    """
    from scipy.optimize import minimize

    d = groups[0].shape[1]

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        total, grad = 0.5 * l2 * float(w @ w), l2 * w
        for x, pos in zip(groups, positives, strict=True):
            s = x @ w
            s = s - s.max()
            p = np.exp(s)
            p /= p.sum()
            pp = p[pos]
            mass = pp.sum()
            total -= float(np.log(max(mass, 1e-300)))
            grad = grad + x.T @ p - (x[pos].T @ pp) / max(mass, 1e-300)
        return total, grad

    res = minimize(loss, np.zeros(d), jac=True, method="L-BFGS-B")
    return np.asarray(res.x)


@dataclass
class RemakeChooser:
    """Linear scorer over :data:`FEATURES` with a switching margin (see module docstring)."""

    weights: list[float]
    margin: float = 0.0
    training: dict | None = None

    def scores(self, facts: list[RemakeFacts]) -> np.ndarray:
        """``w . x`` per candidate."""
        return np.asarray([remake_features(f) for f in facts]) @ np.asarray(self.weights)

    def choose(self, facts: list[RemakeFacts]) -> int:
        """Index of the chosen candidate: the best score if it beats the rule pick by more than ``margin``."""
        s = self.scores(facts)
        pick = next((i for i, f in enumerate(facts) if f.rule_pick), 0)
        best = int(np.argmax(s))
        return best if s[best] > s[pick] + self.margin else pick

    def to_json(self) -> dict:
        """The resource object."""
        return {
            "schema": SCHEMA,
            "features": list(FEATURES),
            "weights": [round(float(w), 6) for w in self.weights],
            "margin": float(self.margin),
            "training": self.training or {},
        }

    def save(self, path: str | Path) -> None:
        """Write the resource atomically."""
        write_json(path, self.to_json())

    @classmethod
    def from_json(cls, obj: dict, source: str = "<json>") -> RemakeChooser:
        """Validate and build.

        Raises:
            ValueError: wrong schema or a feature list that differs from :data:`FEATURES`.
        """
        if obj.get("schema") != SCHEMA:
            raise ValueError(f"{source}: schema {obj.get('schema')!r}, expected {SCHEMA!r}")
        if list(obj.get("features", [])) != list(FEATURES) or len(obj.get("weights", [])) != len(FEATURES):
            raise ValueError(f"{source}: features/weights differ from remake_chooser.FEATURES (retrain)")
        return cls([float(w) for w in obj["weights"]], float(obj.get("margin", 0.0)), obj.get("training"))

    @classmethod
    def load(cls, path: str | Path) -> RemakeChooser:
        """Read a resource file."""
        return cls.from_json(read_json(path), str(path))
