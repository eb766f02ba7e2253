"""One conversation with the recommender: CR-Walker's Algorithm 1, turn by turn, with negative feedback.

A turn (:meth:`Session.respond`):

1. clean the text (:func:`~crwalker.engine.cards.clean_user_text`: control characters dropped, at most
   1,000 characters) and link it with the entity linker, the entities linked in the last
   :data:`LINK_CONTEXT_TURNS` turns as dialogue context;
2. update the entity status: linked entities become *mentioned*; negated spans and "seen it" become
   rejections (rules in :mod:`crwalker.engine.feedback`);
3. encode ``[y_{t-1}; x_t]`` for the last ``l_max`` exchanges with the walker's frozen BERT; each pair's
   vector is cached in the session, so only the new pair is encoded;
4. walk: LSTM over the pairs (Eq. 1), portrait over mentioned, non-rejected entities (Eq. 3), intent
   (Eq. 4), two hops (Eq. 5-7) with the turn's :class:`WalkControls` and the session's exclusions;
5. linearise the tree into the dialog act; yield a ``"reasoning"`` event;
6. stream the reply from the act-conditioned generator (movie placeholders filled with the selected
   titles), one ``"token"`` event per piece;
7. link the reply (system mentions become *mentioned* too, as in the training labels), commit the turn
   to the history and yield ``"done"``.

Guided mode (``WalkControls(guided=True)`` with an engine that has a guide): after step 2 the user's
answer to the previous guided question is applied, and after step 4 the trained Movie-domain policy's
decision replaces the walker's intent and tree (ask -> a query act about one attribute, recommend -> the
policy's candidates re-ranked by the walker); see :mod:`crwalker.engine.guided`.

Nothing is committed before step 7: an exception or an abandoned stream leaves the session unchanged.

Locking: turns of one session are serialised by a per-session turn lock, released *before* the ``done``
event is yielded (so a caller may stop iterating at ``done``; the generator may be resumed from any
thread, as Gradio does). :meth:`Session.feedback` / :meth:`Session.reject` / :meth:`Session.to_state` only
take a short state lock and never wait for a running turn; feedback given while a turn is running is kept
(the turn commits its own feedback changes as a delta). Different sessions share nothing mutable.
"""

from __future__ import annotations

import copy
import dataclasses
import threading
import time
import uuid
from collections.abc import Iterator

import numpy as np
import torch

from crwalker.data import exchange_pairs
from crwalker.features import pair_key
from crwalker.state import dialogue_state

from .cards import clean_user_text
from .engine import Engine, WalkOutcome
from .feedback import FEEDBACK_KINDS, Preferences, check_entity
from .guided import REASONS, GuidedState, question_for
from .types import TreeNode, TurnEvent, TurnResult, WalkControls

STATE_VERSION = 1
LINK_CONTEXT_TURNS = 10  #: turns whose linked entities form the linker's dialogue context
USER, SYSTEM = "seeker", "recommender"  # the canonical ReDial roles (crwalker.data.exchange_pairs)
#: said when the generator produced nothing (it stopped at once); keeps "every turn gets a reply"
EMPTY_REPLY_FALLBACK = "Could you tell me a bit more about what you would like to watch?"


class Session:
    """Per-conversation state over a shared :class:`~crwalker.engine.engine.Engine` (see module docstring)."""

    def __init__(self, engine: Engine, session_id: str | None = None):
        self.engine = engine
        self.id = session_id or uuid.uuid4().hex
        self.turns: list[dict] = []  # {"role", "text", "entities": [linked ids]}
        self.results: list[TurnResult] = []
        self.mentioned: list[int] = []  # first-mention order (user and system)
        self.prefs = Preferences()
        self.guided = GuidedState()
        self._feats: dict[bytes, torch.Tensor] = {}
        self._turn_lock = threading.Lock()  # one turn at a time (plain Lock: releasable from any thread)
        self._state_lock = threading.Lock()  # short critical sections: commit, feedback, snapshot

    # ------------------------------------------------------------------------------------------ views
    @property
    def rejected(self) -> set[int]:
        return set(self.prefs.rejected)

    @property
    def recommended(self) -> list[int]:
        return list(self.prefs.recommended)

    def walker_context(self, mentioned: list[int] | None = None, prefs: Preferences | None = None) -> list[int]:
        """Portrait / Table-1 input: mentioned and liked entities that are not rejected (first-mention order)."""
        prefs = prefs or self.prefs
        ids = list(dict.fromkeys(list(mentioned if mentioned is not None else self.mentioned) + sorted(prefs.liked)))
        return [e for e in ids if e not in prefs.rejected]

    # ------------------------------------------------------------------------------------------ feedback
    def feedback(self, entity_id: int, kind: str) -> None:
        """Movie feedback: ``"like"``, ``"dislike"`` or ``"seen"`` (rules in :mod:`crwalker.engine.feedback`).

        Raises:
            ValueError: unknown kind, id not in the KG, or not a movie.
        """
        if kind not in FEEDBACK_KINDS:
            raise ValueError(f"feedback kind must be one of {FEEDBACK_KINDS}, got {kind!r}")
        e = check_entity(entity_id, len(self.engine.kg))
        if self.engine.types[e] != "movie":
            raise ValueError(
                f"feedback is for movies; entity {e} ({self.engine.names[e]!r}) is a {self.engine.types[e]}: "
                "use Session.reject for attributes"
            )
        with self._state_lock:
            self.prefs.feedback(e, kind)

    def reject(self, entity_id: int) -> None:
        """Exclude an attribute or movie from all later trees and rankings.

        Raises:
            ValueError: id not in the KG or a generic class (Actor, Genre, ...).
        """
        e = check_entity(entity_id, len(self.engine.kg))
        if self.engine.types[e] == "class":
            raise ValueError(f"entity {e} ({self.engine.names[e]!r}) is a generic class and cannot be rejected")
        with self._state_lock:
            self.prefs.rejected.add(e)

    def unreject(self, entity_id: int) -> None:
        """Undo :meth:`reject` (no error when the entity was not rejected)."""
        e = check_entity(entity_id, len(self.engine.kg))
        with self._state_lock:
            self.prefs.rejected.discard(e)

    # ------------------------------------------------------------------------------------------ a turn
    def respond(self, text: object, controls: WalkControls | None = None) -> Iterator[TurnEvent]:
        """Run one turn; yields ``reasoning``, then ``token`` events, then ``done`` (see module docstring)."""
        controls = controls or WalkControls()
        if not isinstance(controls, WalkControls):
            raise TypeError(f"controls must be a WalkControls, got {type(controls).__name__}")
        self._turn_lock.acquire()
        held = True
        try:
            for ev in self._turn(text, controls):
                if ev.kind == "done":
                    self._turn_lock.release()
                    held = False
                yield ev
        finally:
            if held:
                self._turn_lock.release()

    def _turn(self, raw: object, controls: WalkControls) -> Iterator[TurnEvent]:
        eng = self.engine
        t0 = time.perf_counter()
        c0 = time.thread_time()
        text = clean_user_text(raw)
        # 1-2: link, entity status, negative feedback (on copies: committed at the end)
        link_ctx = [e for t in self.turns[-LINK_CONTEXT_TURNS:] for e in t["entities"]]
        linked = eng.link(text, link_ctx)
        with self._state_lock:
            start = copy.deepcopy(self.prefs)
        prefs = copy.deepcopy(start)
        rejected_now = prefs.apply_linked(linked, eng.types, text)
        last_rec = self.results[-1].recommendations if self.results else []
        user_movies = [s["entity_id"] for s in linked if s["type"] == "movie"]
        rejected_now += prefs.apply_seen_it(text, [c.entity_id for c in last_rec], user_movies)
        mentioned = list(dict.fromkeys(self.mentioned + [s["entity_id"] for s in linked]))
        guide = eng.guide if controls.guided else None
        with self._state_lock:
            gstate = copy.deepcopy(self.guided)
        absorbed = None
        if guide is not None:
            absorbed = gstate.absorb_user_turn(text, linked, guide.is_attribute, prefs.liked, prefs.rejected)
            for e in absorbed["reject"]:  # a "no" is a rejection: the negative-feedback rules apply
                if e not in prefs.rejected:
                    rejected_now.append(e)
                prefs.rejected.add(e)
            for e in absorbed["accept"]:  # a "yes" makes the attribute a mentioned, non-rejected entity
                prefs.rejected.discard(e)
            mentioned = list(dict.fromkeys(mentioned + absorbed["accept"]))
        else:
            gstate.pending = None  # a question asked in guided mode is not answered in free mode
        t_link = time.perf_counter()
        # 3: encode the last l_max exchanges, reusing cached pair vectors (the intent classifier, if the walker
        # fuses one, runs meanwhile on the engine's worker thread)
        turns = self.turns + [{"role": USER, "text": text, "entities": []}]
        pairs = exchange_pairs(turns, len(turns), eng.cfg.history)
        context = self.walker_context(mentioned, prefs)
        n_sys = sum(1 for t in self.turns if t["role"] == SYSTEM)
        state = dialogue_state(n_sys, len(turns), [r.intent for r in self.results], text, len(context))
        clf_job = eng.submit(eng.intent_clf_logp, pairs[-1], state) if pairs and eng.intent_clf else None
        keys = [pair_key(p) for p in pairs]
        # walkers trained with intent_utterance also read x_t alone (the pair ("", x_t), as in crwalker.data),
        # encoded on the worker thread
        solo = [("", pairs[-1][1])] if eng.cfg.intent_utterance and pairs else []
        solo_new = [p for p in solo if pair_key(p) not in self._feats and pair_key(p) not in keys]
        solo_job = eng.submit(eng.encode, solo_new) if solo_new else None
        new = {k: p for k, p in zip(keys, pairs, strict=True) if k not in self._feats}
        fresh = dict(zip(new, eng.encode(list(new.values())), strict=True)) if new else {}
        side_cpu = 0.0
        if solo_job is not None:
            vecs, side_cpu = solo_job.result()
            fresh[pair_key(solo_new[0])] = vecs[0]
        feats = torch.stack([self._feats[k] if k in self._feats else fresh[k] for k in keys])
        utt_x = None
        if solo:
            k = pair_key(solo[0])
            utt_x = self._feats[k] if k in self._feats else fresh[k]
        t_enc = time.perf_counter()
        clf_logp, clf_cpu = clf_job.result() if clf_job is not None else (None, 0.0)
        side_cpu += clf_cpu
        # 4: walk with the session's exclusions
        movie_ctx = {e for e in mentioned if eng.types[e] == "movie"}
        rec_excl = prefs.recommend_exclusions(eng.types, eng.cands.neighbors) | movie_ctx
        out = eng.walk(feats, context, controls, prefs.tree_exclusions(), rec_excl, state, utt_x, clf_logp)
        info = None
        if guide is not None:
            out, info = self._guided(out, gstate, prefs, rec_excl, controls, absorbed)
        t_walk = time.perf_counter()
        cpu_reasoning = time.thread_time() - c0 + side_cpu  # + the CPU time of the worker thread's share
        # 5: the act and the reasoning event
        result = self._result(text, linked, out, set(mentioned), rejected_now)
        result.guided = info
        result.timings = {
            "link_ms": round(1000 * (t_link - t0), 2),
            "encode_ms": round(1000 * (t_enc - t_link), 2),
            "walk_ms": round(1000 * (t_walk - t_enc), 2),
            "reasoning_ms": round(1000 * (t_walk - t0), 2),
            "reasoning_cpu_ms": round(1000 * cpu_reasoning, 2),  # CPU time of this thread (contention-free cost)
            "first_token_s": None,
            "total_s": None,
        }
        yield TurnEvent("reasoning", result=copy.deepcopy(result))
        # 6: stream the reply
        titles = [eng.names[c.entity_id] for c in result.recommendations] if out.intent == "recommend" else None
        if titles is None:
            from crwalker.generation.placeholders import act_movies

            titles = [eng.names[m] for m in act_movies(out.act, eng.kg)]
        pieces: list[str] = []
        first = None
        for piece in eng.generator.stream(text, result.act_text, titles, out.intent, **eng.gen_kwargs):
            if first is None:
                first = time.perf_counter() - t0
            pieces.append(piece)
            yield TurnEvent("token", text=piece)
        reply = "".join(pieces).strip()
        if info is not None and info["action"] == "ask" and info["attribute_name"].lower() not in reply.lower():
            # the generator did not name the asked attribute: say it plainly (see crwalker.engine.guided)
            question = question_for(info["attribute_name"], info["class_name"])
            piece = ("" if not reply else " " if reply[-1] in ".!?" else ". ") + question
            reply += piece
            info["question_appended"] = True
            yield TurnEvent("token", text=piece)
        if not reply:  # a model may stop at once (EOS first): the user always gets an answer
            reply = EMPTY_REPLY_FALLBACK
            yield TurnEvent("token", text=reply)
        # 7: system mentions, commit
        sys_linked = eng.link(reply, link_ctx + [s["entity_id"] for s in linked])
        rec_ids = [c.entity_id for c in result.recommendations]
        mentioned = list(dict.fromkeys(mentioned + [s["entity_id"] for s in sys_linked] + rec_ids))
        result.reply = reply
        result.timings["first_token_s"] = round(first if first is not None else time.perf_counter() - t0, 4)
        result.timings["total_s"] = round(time.perf_counter() - t0, 4)
        prefs.recommended.extend(e for e in rec_ids if e not in prefs.recommended)
        with self._state_lock:
            # keep only this turn's pair vectors: the next turn's earlier pairs are among them (bounded memory)
            self._feats = {k: self._feats[k] if k in self._feats else fresh[k] for k in keys}
            self.turns = turns[:-1] + [
                {"role": USER, "text": text, "entities": [s["entity_id"] for s in linked]},
                {"role": SYSTEM, "text": reply, "entities": [s["entity_id"] for s in sys_linked]},
            ]
            self.mentioned = mentioned
            self.prefs.merge_turn(start, prefs)  # feedback given during the turn is kept
            self.guided = gstate
            self.results.append(result)
        yield TurnEvent("done", result=copy.deepcopy(result))

    def say(self, text: object, controls: WalkControls | None = None) -> TurnResult:
        """Run a whole turn and return its final :class:`TurnResult` (convenience for scripts/tests)."""
        final = None
        for ev in self.respond(text, controls):
            if ev.kind == "done":
                final = ev.result
        assert final is not None
        return final

    def _guided(
        self,
        out: WalkOutcome,
        gstate: GuidedState,
        prefs: Preferences,
        rec_excl: set[int],
        controls: WalkControls,
        absorbed: dict,
    ) -> tuple[WalkOutcome, dict]:
        """Steps 3-4 of :mod:`crwalker.engine.guided`: the policy's decision as the turn's act (sets ``pending``)."""
        from crwalker.policies.guide import GuideState
        from kg_build.acts import ActNode, DialogAct

        from .engine import cap_leaves

        eng, guide = self.engine, self.engine.guide
        # the chat's entity state: attributes the user named in earlier turns (also before guided mode was
        # switched on), then this turn's and the confirmed ones; rejected ones are not accepted
        named = [e for t in self.turns if t["role"] == USER for e in t["entities"] if guide.is_attribute(e)]
        accepted = [e for e in dict.fromkeys(named + gstate.accepted) if e not in prefs.rejected]
        rejected_attrs = list(
            dict.fromkeys(gstate.rejected_attrs + sorted(e for e in prefs.rejected if guide.is_attribute(e)))
        )
        decision = guide.decide(GuideState(accepted, rejected_attrs, set(rec_excl), list(gstate.history)))
        info = {
            "policy": guide.policy_name,
            "action": decision.kind,
            "q_values": list(decision.q_values),
            "n_candidates": decision.n_candidates,
            "accepted": accepted,
            "rejected_attrs": rejected_attrs,
            "relaxed": list(decision.relaxed),
            "history": list(gstate.history),
            "answered": absorbed["answered"],
            "answered_name": None if absorbed["answered"] is None else eng.names[absorbed["answered"]],
            "answer": absorbed["answer"],
            "question_appended": False,
        }
        ranked = out.ranked
        if decision.kind == "ask":
            a = decision.attribute
            c = eng.class_of.get(a)
            nodes = [(c, [a])] if c is not None else [(a, [])]
            intent = "query"
            info.update(attribute=a, attribute_name=eng.names[a], class_name=None if c is None else eng.names[c])
            gstate.pending = {"kind": "ask", "attribute": a}
        elif not decision.items:  # every movie is excluded: the walker's own turn (it excludes them too)
            info.update(items=[])
            return out, info
        else:
            intent = "recommend"
            scores = out.movie_scores[np.searchsorted(eng.cands.movie_ids, np.asarray(decision.items, dtype=np.int64))]
            order = sorted(range(len(decision.items)), key=lambda i: -float(scores[i]))  # stable: policy order on ties
            ranked = [(decision.items[i], float(scores[i])) for i in order]
            shown = [e for e, _ in ranked[: int(controls.width)]]
            reasons = [e for e in reversed(accepted) if e not in decision.relaxed][:REASONS]
            nodes = cap_leaves(
                [(r, list(shown)) for r in reasons] or [(m, []) for m in shown], int(controls.max_leaves)
            )
            info.update(items=list(decision.items))
            gstate.pending = {
                "kind": "recommend",
                "items": list(dict.fromkeys(k for e, kids in nodes for k in kids or [e])),
            }
        act = DialogAct(
            intent,
            tuple(ActNode(e, eng.names[e], tuple(ActNode(k, eng.names[k]) for k in kids)) for e, kids in nodes),
        )
        return dataclasses.replace(out, intent=intent, nodes=nodes, hop1_scores={}, ranked=ranked, act=act), info

    def _result(
        self, text: str, linked: list[dict], out: WalkOutcome, mentioned: set[int], rejected_now: list[int]
    ) -> TurnResult:
        eng = self.engine

        def node(e: int, hop: int, kids: list[int]) -> TreeNode:
            score = out.hop1_scores.get(e) if hop == 1 else None
            if score is None and eng.types[e] == "movie" and out.intent == "recommend":
                score = eng.movie_score(out, e)
            return TreeNode(
                e,
                eng.names[e],
                eng.types[e],
                hop,
                e in mentioned,
                None if score is None else round(float(score), 6),
                [node(c, 2, []) for c in kids],
            )

        tree = [node(e, 1, kids) for e, kids in out.nodes]
        recs: list[int] = []
        if out.intent == "recommend":
            for e, kids in out.nodes:
                for x in kids or [e]:
                    if eng.types[x] == "movie" and x not in recs:
                        recs.append(x)
        return TurnResult(
            turn_index=len(self.results),
            user_text=text,
            linked=linked,
            intent=out.intent,
            intent_probs={k: round(v, 6) for k, v in out.intent_probs.items()},
            act_text=out.act.linearize(),
            tree=tree,
            recommendations=[eng.cards.card(e) for e in recs],
            ranked=[(e, round(s, 6)) for e, s in out.ranked],
            rejected_now=sorted(set(rejected_now)),
        )

    # ------------------------------------------------------------------------------------------ state
    def to_state(self) -> dict:
        """JSON-serialisable snapshot (history, entity status, feedback). Pair vectors are not stored:
        they are recomputed on the next turn after :meth:`from_state`."""
        with self._state_lock:
            return {
                "state_version": STATE_VERSION,
                "id": self.id,
                "kg_entities": len(self.engine.kg),
                "turns": copy.deepcopy(self.turns),
                "mentioned": list(self.mentioned),
                "preferences": self.prefs.to_json(),
                "guided": self.guided.to_json(),
                "results": [r.to_json() for r in self.results],
            }

    @classmethod
    def from_state(cls, engine: Engine, state: dict) -> Session:
        """Rebuild a session from :meth:`to_state` output.

        Raises:
            ValueError: wrong version, another KG, or malformed content.
        """
        if not isinstance(state, dict) or state.get("state_version") != STATE_VERSION:
            raise ValueError(f"session state must be a dict with state_version {STATE_VERSION}")
        n = len(engine.kg)
        if state.get("kg_entities") != n:
            raise ValueError(f"session state was made with a KG of {state.get('kg_entities')} entities, engine has {n}")
        try:
            s = cls(engine, str(state["id"]))
            for t in state["turns"]:
                if t["role"] not in (USER, SYSTEM):
                    raise ValueError(f"unknown role {t['role']!r}")
                s.turns.append(
                    {"role": t["role"], "text": str(t["text"]), "entities": [check_entity(e, n) for e in t["entities"]]}
                )
            s.mentioned = [check_entity(e, n) for e in state["mentioned"]]
            s.prefs = Preferences.from_json(state["preferences"], n)
            s.guided = GuidedState.from_json(state.get("guided"), n)  # absent in states saved before guided mode
            s.results = [TurnResult.from_json(r) for r in state["results"]]
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed session state: {exc!r}") from exc
        return s
