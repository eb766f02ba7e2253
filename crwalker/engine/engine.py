"""The read-only part of the online recommender: models, KG, linker and the per-turn reasoning step.

One :class:`Engine` is shared by all sessions. It holds the KG, the Table-1 candidate sets, the entity
linker, the frozen BERT (the one the walker was trained with: checkpoint config ``bert``), the
CR-Walker model with its entity embeddings ``H`` computed **once** at load time (Eq. 2 does not depend
on the dialogue, so no turn recomputes the R-GCN), and the act-conditioned generator. Nothing in it is
mutated by a turn; per-dialogue state lives in :class:`crwalker.engine.session.Session`.

Thread safety: torch modules are only run in ``inference_mode`` (no state is written), so concurrent
turns of different sessions may call BERT, the walker and the generator at the same time. The spaCy
tokenizer of the linker is not documented as thread-safe, so linking is serialised with a lock
(about 2 ms per call).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from crwalker.candidates import INTENT_INDEX, INTENT_NAMES, CandidateSets
from crwalker.config import ModelConfig, model_config_of
from crwalker.generation.model import DEFAULT_DECODING
from crwalker.metrics import rank_candidates
from crwalker.state import STATE_DIM
from crwalker.walker import CRWalker
from kg_build.acts import ActNode, DialogAct
from kg_build.schema import KnowledgeGraph

from .cards import CardFactory
from .types import WalkControls

RANKED_TOP = 50


@dataclass
class WalkOutcome:
    """Result of :meth:`Engine.walk` for one turn."""

    intent: str
    intent_probs: dict[str, float]
    nodes: list[tuple[int, list[int]]]  # (hop-1 entity, hop-2 children), after the leaf cap
    hop1_scores: dict[int, float]
    movie_scores: np.ndarray  # recommend-walk score of every candidate movie (aligned with movie_ids)
    ranked: list[tuple[int, float]]
    act: DialogAct


class CachedCandidates(CandidateSets):
    """:class:`CandidateSets` with every neighbour list and query/chat hop-2 list computed once at load.

    Training builds these lists once per batch; online every turn would rebuild the query hop-2 list of
    the class ``Actor`` (13k attributes) in Python. Filled eagerly, so turns only read the dicts.
    """

    def __init__(self, kg: KnowledgeGraph):
        super().__init__(kg)
        self._hop2: dict[tuple[str, int], list[int]] = {}
        for e in range(len(kg)):
            self.neighbors(e)
        for c in self.class_ids:
            self._hop2[("query", c)] = super().hop2("query", c)

    def hop2(self, intent: str, parent: int) -> list[int] | None:
        key = (intent, parent)
        hit = self._hop2.get(key)
        if hit is None:
            hit = super().hop2(intent, parent)
            if hit is not None:
                self._hop2[key] = hit  # deterministic value; a concurrent duplicate write is harmless
        return hit


class Engine:
    """Shared, read-only inference engine (see module docstring). Build it with :meth:`load`.

    Args:
        kg: The knowledge graph the walker was trained on.
        walker: A :class:`~crwalker.walker.CRWalker` with loaded weights.
        bert: ``(tokenizer, model)`` of the frozen utterance encoder.
        generator: An :class:`~crwalker.generation.model.ActConditionedGenerator`.
        cards: Movie-card factory (name-only cards when ``None``).
        manifest: Provenance of the loaded weights (bundle manifest or checkpoint paths).
        gen_kwargs: Keyword arguments for ``generator.stream`` (``max_new_tokens``, ``top_p``, ``do_sample``).
        guide: A :class:`~crwalker.policies.guide.MovieGuide` for guided mode (``None``: guided mode is off).
        intent_clf: The fine-tuned :class:`~crwalker.intent_clf.IntentClassifier` (with its tokenizer);
            required when the walker's ``intent_clf_weight`` is set.
    """

    def __init__(
        self,
        kg: KnowledgeGraph,
        walker: CRWalker,
        bert,
        generator,
        cards: CardFactory | None = None,
        linker=None,
        manifest: dict | None = None,
        gen_kwargs: dict | None = None,
        guide=None,
        intent_clf=None,
    ):
        from kg_build.linker import EntityLinker

        if walker.cfg.intent_clf_weight and intent_clf is None:
            raise ValueError(
                f"the walker late-fuses an intent classifier (intent_clf_weight={walker.cfg.intent_clf_weight}) but "
                "none was given: load a bundle that contains it or pass intent_clf=<IntentClassifier>"
            )
        self.intent_clf = intent_clf
        # side work of a turn (the intent classifier, the encoding of x_t alone) overlaps the frozen encoder's
        # forward of the new pair on the second core (one worker thread, shared by all sessions)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="crwalker-side")

        self.kg = kg
        self.cfg: ModelConfig = walker.cfg
        self.walker = walker.eval()
        self.device = next(walker.parameters()).device
        self.cands = CachedCandidates(kg)
        self.types = list(self.cands.types)
        self.names = [e.name for e in kg.entities]
        self.bert_tokenizer, self.bert = bert
        self.bert.eval()
        self.generator = generator
        self.cards = cards or CardFactory(kg)
        self.linker = (linker or EntityLinker.from_kg(kg)).load()
        self.manifest = manifest or {}
        decoding = getattr(generator, "decoding", DEFAULT_DECODING)  # the checkpoint's tuned top-p / temperature
        self.gen_kwargs = {"max_new_tokens": 50, "do_sample": True, **decoding, **(gen_kwargs or {})}
        self._link_lock = threading.Lock()
        self.guide = guide
        class_of = kg.class_ids
        #: generic class (first of the entity's classes, e.g. Actor before Director) of every attribute
        self.class_of = {
            e.id: next(class_of[c] for c in e.classes if c in class_of)
            for e in kg.entities
            if e.type not in ("movie", "class") and any(c in class_of for c in e.classes)
        }
        t0 = time.perf_counter()
        with torch.inference_mode():
            self.H = self.walker.entity_embeddings()  # Eq. 2 once: fixed at inference
            self.H_movies = self.H[self.walker.movie_ids]
        self.h_seconds = time.perf_counter() - t0

    # ------------------------------------------------------------------------------------------ loading
    @classmethod
    def load(
        cls,
        bundle: str | Path | None = None,
        walker: str | Path | None = None,
        generator: str | Path | None = None,
        kg: str | Path = "data/kg",
        device: str = "auto",
        bert=None,
        linker_options: dict | None = None,
        gen_kwargs: dict | None = None,
        check_bert: bool = True,
        linker=None,
        guide=None,
    ) -> Engine:
        """Load from a release bundle (``bundle=``) or from a walker checkpoint + generator folder.

        Args:
            bundle: Folder written by ``python -m crwalker.engine.bundle build``.
            walker: ``runs/<name>/best.safetensors`` (ignored when ``bundle`` is given).
            generator: An ``ActConditionedGenerator.save`` folder (ignored when ``bundle`` is given).
            kg: KG folder; must be the KG the walker was trained on (checked against the bundle).
            device: ``auto`` (CUDA when available), ``cpu``, ``cuda:0``...
            bert: Optional ``(tokenizer, model)`` replacing the encoder named in the walker config.
            linker_options: :class:`kg_build.linker.LinkerOptions` fields.
            gen_kwargs: Decoding options for the generator (``max_new_tokens``, ``top_p``, ``do_sample``).
            check_bert: Refuse an encoder whose fingerprint differs from the one recorded in the bundle.
            linker: An already loaded :class:`~kg_build.linker.EntityLinker` over the same KG (else built here).
            guide: Guided-mode policy: a :class:`~crwalker.policies.guide.MovieGuide`, or a Movie policy run
                folder (``runs/mcr/movie/scpr``). Default: the bundle's guide, if it has one.

        Raises:
            ValueError: KG or encoder mismatch, or neither ``bundle`` nor ``walker`` + ``generator``.
        """
        from crwalker.device import resolve_device
        from crwalker.encoders import load_bert, model_fingerprint
        from kg_build.linker import EntityLinker

        dev = resolve_device(device)
        kg_path = Path(kg)
        graph = KnowledgeGraph.load(kg_path)
        if bundle is not None:
            from .bundle import load_bundle, load_guide, load_intent_clf

            model, gen, manifest = load_bundle(bundle, graph, kg_path, dev)
            clf = load_intent_clf(bundle, manifest, dev)
            if guide is None:
                guide = load_guide(bundle, len(graph))
        elif walker is not None and generator is not None:
            from crwalker.generation.model import ActConditionedGenerator

            model, doc = load_walker(walker, graph, dev)
            clf = None
            if model.cfg.intent_clf_weight:
                from crwalker.intent_clf import load_classifier

                clf, _ = load_classifier(model.cfg.intent_clf, dev)
            gen = ActConditionedGenerator.load(generator, device=dev)
            manifest = {"walker": str(walker), "generator": str(generator), "walker_doc": doc.get("train_state", {})}
            feats_json = Path(walker).parent / "features.json"  # written by crwalker.train: encoder fingerprint
            if feats_json.exists():
                from data_scripts.utils.io import read_json

                manifest["bert_fingerprint"] = read_json(feats_json).get("fingerprint")
        else:
            raise ValueError("Engine.load needs bundle=... or both walker=... and generator=...")
        enc = bert if bert is not None else load_bert(model.cfg.bert, dev)
        want = manifest.get("bert_fingerprint")
        if check_bert and want and bert is None:
            got = model_fingerprint(enc[1], model.cfg.bert_max_length, model.cfg.bert_pooling)
            if got != want:
                raise ValueError(
                    f"utterance encoder {model.cfg.bert!r} has fingerprint {got}, but the walker was trained "
                    f"with features of fingerprint {want}: install the same encoder weights"
                )
        if linker is None:
            linker = EntityLinker.from_kg(graph, **(linker_options or {}))
        cards = CardFactory.from_folder(graph, kg_path)
        if isinstance(guide, str | Path):
            from crwalker.policies.guide import GuideConfig, MovieGuide

            guide = MovieGuide.from_run(GuideConfig(run_dir=str(guide), kg=str(kg_path)), len(graph))
        return cls(graph, model, enc, gen, cards, linker, manifest, gen_kwargs, guide, clf)

    def new_session(self):
        """A fresh :class:`~crwalker.engine.session.Session` (its own history, feedback and feature cache)."""
        from .session import Session

        return Session(self)

    # ------------------------------------------------------------------------------------------ steps
    def link(self, text: str, context: Sequence[int] | None) -> list[dict]:
        """Linked spans of ``text`` as dicts (``entity_id, name, type, text, start, end, negated, score, source``)."""
        if not text:
            return []
        with self._link_lock:
            spans = self.linker.link(text, context=list(context) if context else None)
        return [
            {
                "entity_id": int(s.entity),
                "name": self.names[s.entity],
                "type": self.types[s.entity],
                "text": s.text,
                "start": int(s.start),
                "end": int(s.end),
                "negated": bool(s.negated),
                "score": round(float(s.score), 4),
                "source": s.source,
            }
            for s in spans
        ]

    @torch.inference_mode()
    def encode(self, pairs: Sequence[tuple[str, str]]) -> torch.Tensor:
        """Frozen-BERT [CLS] vectors ``[n, H]`` of ``(y_{t-1}, x_t)`` pairs (the inner BERT of Eq. 1)."""
        from crwalker.encoders import encode_pairs

        if not pairs:
            return torch.zeros(0, self.bert.config.hidden_size)
        # one pair per forward: no padding, so a pair's vector does not depend on what it was batched with
        cfg = self.cfg
        return encode_pairs(
            list(pairs), self.bert_tokenizer, self.bert, 1, cfg.bert_max_length, False, cfg.bert_pooling
        )

    @torch.inference_mode()
    def intent_clf_logp(self, pair: tuple[str, str], state: Sequence[float]) -> torch.Tensor | None:
        """``log P_clf`` ``[3]`` of the fine-tuned intent classifier for the last ``(y_{t-1}, x_t)`` pair, or
        ``None`` when the walker does not fuse one."""
        if self.intent_clf is None or not self.cfg.intent_clf_weight:
            return None
        return self.intent_clf.log_probs([[pair]], [list(state)])[0]

    def submit(self, fn, *args) -> Future:
        """Run ``fn(*args)`` on the engine's worker thread; the future gives ``(result, cpu_seconds)``."""

        def job():
            c0 = time.thread_time()
            out = fn(*args)
            return out, time.thread_time() - c0

        return self._pool.submit(job)

    @torch.inference_mode()
    def walk(
        self,
        feats: torch.Tensor,
        context: Sequence[int],
        controls: WalkControls,
        tree_exclude: set[int],
        rec_exclude: set[int],
        state: Sequence[float] | None = None,
        utt_x: torch.Tensor | None = None,
        clf_logp: torch.Tensor | None = None,
    ) -> WalkOutcome:
        """Eq. 1 (LSTM over ``feats``), Eq. 3-4 (portrait, intent) and the two-hop walk (Eq. 5-7).

        Args:
            feats: ``[L, H]`` BERT vectors of the last ``l_max`` pairs, oldest first.
            context: Entities for the portrait and Table-1 candidates (mentioned, not rejected).
            controls: ``tau``, ``m`` and the leaf cap.
            tree_exclude: Entities no tree may contain.
            rec_exclude: Movies that may not be recommended nor ranked.
            state: dialogue-state features ``s_t`` (:func:`crwalker.state.dialogue_state`; zeros if None),
                read by walkers trained with ``intent_state``.
            utt_x: ``[H]`` encoder vector of the user utterance alone (the pair ``("", x_t)``), read by walkers
                trained with ``intent_utterance`` (zeros if None).
            clf_logp: ``[3]`` intent-classifier log-probabilities (:meth:`intent_clf_logp`), added with the
                walker's ``intent_clf_weight`` (ignored if None).
        """
        w = self.walker
        dev = self.device
        ctx = [int(e) for e in context]
        utt = feats.to(dev, torch.float32)[None]
        batch = SimpleNamespace(
            utt=utt,
            utt_len=torch.tensor([utt.shape[1]]),
            state=torch.tensor([list(state) if state is not None else [0.0] * STATE_DIM], device=dev),
            utt_x=None if utt_x is None else utt_x.to(dev, torch.float32)[None],
            intent_clf=None if clf_logp is None else clf_logp.to(dev, torch.float32)[None],
            mentions=torch.tensor([ctx or [0]], dtype=torch.long, device=dev),
            mention_mask=torch.tensor([[True] * len(ctx) or [False]], device=dev),
        )
        u, p, logits = w.encode(batch, self.H)
        probs = torch.softmax(logits, -1)[0]
        pred = int(probs.argmax())
        m, tau = int(controls.width), float(controls.threshold)
        rec = INTENT_INDEX["recommend"]
        rec_ban = tree_exclude | rec_exclude
        rec_walk = w._walk(self.H, self.H_movies, u[0], p[0], rec, ctx, self.cands, m, tau, True, rec_ban)
        if pred == rec:
            nodes, hop1_scores, _ = rec_walk
        else:
            nodes, hop1_scores, _ = w._walk(
                self.H, self.H_movies, u[0], p[0], pred, ctx, self.cands, m, tau, True, tree_exclude
            )
        movie_scores = rec_walk[2]
        nodes = cap_leaves(nodes, int(controls.max_leaves))
        ranked_excl = np.fromiter(rec_ban | {e for e in ctx if self.types[e] == "movie"}, dtype=np.int64)
        top = rank_candidates(movie_scores, self.cands.movie_ids, exclude=ranked_excl, top_k=RANKED_TOP)
        idx = np.searchsorted(self.cands.movie_ids, top)  # movie_ids are ascending
        ranked = [(int(e), float(movie_scores[i])) for e, i in zip(top, idx, strict=True)]
        intent = INTENT_NAMES[pred]
        act = DialogAct(
            intent,
            tuple(ActNode(e, self.names[e], tuple(ActNode(c, self.names[c]) for c in kids)) for e, kids in nodes),
        )
        return WalkOutcome(
            intent,
            {n: float(probs[i]) for i, n in enumerate(INTENT_NAMES)},
            nodes,
            hop1_scores,
            movie_scores,
            ranked,
            act,
        )

    def movie_score(self, outcome: WalkOutcome, eid: int) -> float | None:
        """Recommend-walk score of a movie (``None`` for other entities)."""
        if self.types[eid] != "movie":
            return None
        idx = int(np.searchsorted(self.cands.movie_ids, eid))
        return float(outcome.movie_scores[idx])


def cap_leaves(nodes: list[tuple[int, list[int]]], max_leaves: int) -> list[tuple[int, list[int]]]:
    """Keep at most ``max_leaves`` leaves in preorder; a hop-1 node whose children were all cut is dropped."""
    out: list[tuple[int, list[int]]] = []
    total = 0
    for e, kids in nodes:
        if total >= max_leaves:
            break
        if kids:
            keep = kids[: max_leaves - total]
            out.append((e, keep))
            total += len(keep)
        else:
            out.append((e, []))
            total += 1
    return out


def load_walker(path: str | Path, kg: KnowledgeGraph, device: torch.device) -> tuple[CRWalker, dict]:
    """A trained walker from a ``crwalker.checkpoint`` file (weights only; optimizer state ignored).

    Raises:
        ValueError: when the checkpoint's node table does not match ``kg`` (another KG build).
    """
    from safetensors import safe_open

    from crwalker.checkpoint import read_checkpoint_doc

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: walker checkpoint not found (train with `python -m crwalker.train`)")
    doc = read_checkpoint_doc(path)
    cfg = model_config_of(doc["config"])
    with safe_open(str(path), framework="pt", device="cpu") as f:
        sd = {k[len("model.") :]: f.get_tensor(k) for k in f.keys() if k.startswith("model.")}  # noqa: SIM118
    return build_walker(cfg, sd, kg, device), doc


def build_walker(cfg: ModelConfig, state: dict[str, torch.Tensor], kg: KnowledgeGraph, device) -> CRWalker:
    """Instantiate :class:`CRWalker` for ``kg`` and load ``state`` (converted to float32)."""
    n = state["entities.node_emb.weight"].shape[0]
    if n != len(kg):
        raise ValueError(
            f"walker weights have {n} entity embeddings but the KG has {len(kg)} entities: "
            "use the KG the walker was trained on (or retrain)"
        )
    bert_dim = state["utterance.lstm.weight_ih_l0"].shape[1]
    model = CRWalker(cfg, kg, bert_dim)
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return model.to(device).eval()
