"""Guided mode on the tiny KG: the Movie-domain guide (crwalker.policies.guide), policy decision -> act,
yes/no answers -> accepted/rejected attributes, state round trip, bundle packing; plus the real bundle."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from crwalker.engine import Engine, Session, WalkControls
from crwalker.engine.guided import GuidedState, answer_to, parse_yes_no, question_for
from crwalker.policies.baselines import SCPRPolicy
from crwalker.policies.checkpoint import save_policy
from crwalker.policies.fm import FM
from crwalker.policies.guide import GuideConfig, GuideState, MovieGuide, guide_tensors, pack_guide
from data_scripts.utils.io import write_jsonl

# tiny KG: movies Terminator 4, T2 5, Alien 6, Aliens 7, Superbad 8; Arnold 9, Cameron 10, Weaver 11,
# Action 12, Horror 13, Comedy 14, 1980s 15; classes Actor 0, Director 1, Genre 2, Time 3
GUIDED = WalkControls(threshold=0.0, width=5, max_leaves=10, guided=True)
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def guide_run(tmp_path_factory, engine_kg_dir):
    """A Movie-domain run folder on the tiny KG: tiny MovieLens titles, a random FM and SCPR Q-network."""
    root = tmp_path_factory.mktemp("guide")
    ml = root / "movielens"
    titles = [("Terminator, The", 1984), ("Terminator 2: Judgment Day", 1991), ("Alien", 1979), ("Aliens", 1986)]
    titles.append(("Superbad", 2007))
    write_jsonl(ml / "movies.jsonl", [{"item_id": i + 1, "title": t, "year": y} for i, (t, y) in enumerate(titles)])
    rng = np.random.default_rng(0)
    fm = FM(*(rng.normal(size=s).astype(np.float32) for s in ((3, 8), (5, 8), (7, 8))))
    (root / "fm").mkdir()
    fm.save(root / "fm", {"dataset": "movie"})
    torch.manual_seed(0)
    pol = SCPRPolicy(fm, 15, 10, hidden=16)
    run = root / "scpr"
    run.mkdir()
    meta = {"policy": "scpr", "dataset": "movie", "episode": 3, "config": {"max_turn": 15, "topk": 10}}
    save_policy(run, {f"net.{k}": v for k, v in pol.q.state_dict().items()}, meta)
    cfg = GuideConfig(run_dir=str(run), kg=str(engine_kg_dir), movielens=str(ml), min_attr_items=1, results="")
    return cfg


def biased(guide: MovieGuide, action: str) -> MovieGuide:
    """A copy of ``guide`` whose DQN always prefers ``action`` (ask or recommend)."""
    t, meta = guide.tensors, dict(guide.meta)
    t = dict(t)
    t["net.2.weight"] = torch.zeros_like(t["net.2.weight"])
    t["net.2.bias"] = torch.tensor([1.0, 0.0] if action == "ask" else [0.0, 1.0])
    return MovieGuide.from_tensors(t, meta)


@pytest.fixture(scope="module")
def tiny_guide(guide_run):
    t, meta = guide_tensors(guide_run)
    g = MovieGuide.from_tensors(t, meta, 16)
    g.tensors = t
    return g


@pytest.fixture(scope="module")
def guided_engine(tiny_bert, tiny_gen_dir, engine_kg_dir, tiny_linker, walker_factory, tiny_guide):
    """Factory: an engine on the tiny KG whose guide always asks / recommends / decides by its random DQN."""
    from crwalker.engine.cards import CardFactory
    from crwalker.generation.model import ActConditionedGenerator

    tok, bert, bert_dir = tiny_bert
    gen = ActConditionedGenerator.load(tiny_gen_dir)
    kg = tiny_linker.kg

    def make(action: str | None = None) -> Engine:
        guide = tiny_guide if action is None else biased(tiny_guide, action)
        walker = walker_factory(kg, bert_dir)
        cards = CardFactory.from_folder(kg, engine_kg_dir)
        return Engine(
            kg, walker, (tok, bert), gen, cards, tiny_linker, gen_kwargs={"max_new_tokens": 4, "do_sample": False},
            guide=guide,
        )  # fmt: skip

    return make


# ------------------------------------------------------------------------------------------ pieces
@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("Yes", True), ("yes!", True), ("sure, sounds good", True), ("yeah I do", True), ("of course", True),
        ("No", False), ("nope", False), ("not really", False), ("Not really, I prefer comedies", False),
        ("no thanks", False), ("no horror please", None), ("nothing", None), ("yesterday", None), ("hmm", None),
    ],
)  # fmt: skip
def test_parse_yes_no(text, want):
    assert parse_yes_no(text) is want


def test_answer_by_mention_wins_and_questions():
    linked = [{"entity_id": 13, "negated": True}]
    assert answer_to(13, "yes but no horror", linked) is False
    assert answer_to(12, "yes", linked) is True
    assert question_for("Tom Hanks", "Actor") == "Do you like movies with Tom Hanks?"
    assert question_for("X", None) == "Do you like X?"


def test_movie_index_and_guide_mapping(tiny_guide):
    assert tiny_guide.items_kg.tolist() == [4, 5, 6, 7, 8]
    assert tiny_guide.attrs_kg.tolist() == [9, 10, 11, 12, 13, 14, 15]
    assert tiny_guide.is_attribute(12) and not tiny_guide.is_attribute(4) and tiny_guide.is_item(8)
    # Eq. 3: items with every accepted attribute, minus excluded ones
    mask, acc, dropped = tiny_guide.candidates(GuideState([12, 15], [], {4}))
    assert tiny_guide.items_kg[mask].tolist() == [7] and dropped == []
    # no movie has Horror and Comedy: the oldest accepted attribute is dropped
    mask, acc, dropped = tiny_guide.candidates(GuideState([13, 14]))
    assert dropped == [13] and tiny_guide.items_kg[mask].tolist() == [8]


def test_decisions_map_back_to_kg_ids(tiny_guide):
    ask, rec = biased(tiny_guide, "ask"), biased(tiny_guide, "recommend")
    d = ask.decide(GuideState([12], [10], set(), [1]))
    assert d.kind == "ask" and d.attribute in (9, 11, 13, 14, 15) and d.n_candidates == 3  # not asked twice
    r = rec.decide(GuideState([12], [], {5}, []))
    assert r.kind == "recommend" and set(r.items) == {4, 7} and len(r.scores) == 2
    # the DQN's own choice is a function of [history, |V_cand| bucket] only
    assert tiny_guide.decide(GuideState([12])).kind in ("ask", "recommend")


def test_pack_round_trip_and_bad_ids(tiny_guide):
    t = pack_guide(tiny_guide.items_kg, tiny_guide.attrs_kg, [np.array([0, 3]), np.array([1])], tiny_guide.policy.fm,
                   tiny_guide.policy.q.state_dict())  # fmt: skip
    assert t["fm.user"].shape == (1, 8) and t["item_attr_ptr"].tolist() == [0, 2, 3]
    with pytest.raises(ValueError, match="outside the KG"):
        MovieGuide.from_tensors(tiny_guide.tensors, tiny_guide.meta, 10)
    with pytest.raises(ValueError, match="missing"):
        MovieGuide.from_tensors({"items_kg": t["items_kg"]}, tiny_guide.meta)


def test_guide_tensors_refuses_wrong_run(guide_run, tmp_path):
    bad = GuideConfig(**{**guide_run.__dict__, "run_dir": str(tmp_path)})
    with pytest.raises(FileNotFoundError, match="policy.json not found"):
        guide_tensors(bad)
    small = GuideConfig(**{**guide_run.__dict__, "min_attr_items": 2})  # 5 attributes, the FM has 7
    with pytest.raises(ValueError, match="not the data the policy was trained on"):
        guide_tensors(small)


# ------------------------------------------------------------------------------------------ sessions
def test_ask_act_then_yes_then_no(guided_engine):
    s = guided_engine("ask").new_session()
    r = s.say("hi, i like action movies", GUIDED)
    g = r.guided
    assert r.intent == "query" and g["action"] == "ask" and g["accepted"] == [12]
    a, c = g["attribute"], g["class_name"]
    assert a not in (12,) and s.engine.types[a] != "movie"
    # tree: query -> the attribute's generic class -> the attribute; the act says the same
    assert [n.entity_id for n in r.tree] == [s.engine.class_of[a]] and [k.entity_id for k in r.tree[0].children] == [a]
    assert r.act_text == f"[ Query ( {c} ( {g['attribute_name']} ) ) ]"
    assert r.recommendations == [] and g["attribute_name"].lower() in r.reply.lower()  # named (appended if needed)
    assert s.guided.pending == {"kind": "ask", "attribute": a}
    r2 = s.say("Yes", GUIDED)
    assert r2.guided["answered"] == a and r2.guided["answer"] is True
    assert s.guided.accepted == [12, a] and s.guided.history == [1] and a in s.mentioned
    b = r2.guided["attribute"]
    assert b not in (12, a)
    r3 = s.say("not really", GUIDED)
    assert r3.guided["answer"] is False and b in s.rejected and b in r3.rejected_now
    assert s.guided.rejected_attrs == [b] and s.guided.history == [1, -1]
    if r3.guided["action"] == "ask":  # (recommends when no attribute is left to ask)
        assert r3.guided["attribute"] not in (12, a, b)


def test_no_feeds_negative_feedback(guided_engine):
    eng = guided_engine("ask")
    s = eng.new_session()
    s.say("hello", GUIDED)
    a = s.guided.pending["attribute"]
    s.say("no", GUIDED)
    assert a in s.rejected
    movies_of_a = {m for m in eng.cands.neighbors(a) if eng.types[m] == "movie"}
    assert movies_of_a <= s.prefs.recommend_exclusions(eng.types, eng.cands.neighbors)
    # a later free-mode turn never shows it either
    r = s.say("anything?", WalkControls(threshold=0.0, width=5, max_leaves=10))
    assert r.guided is None and s.guided.pending is None
    assert a not in {n.entity_id for n in r.tree} | {k.entity_id for n in r.tree for k in n.children}


def test_recommend_uses_policy_candidates_and_records_rejection(guided_engine):
    s = guided_engine("recommend").new_session()
    r = s.say("i like action movies", GUIDED)
    g = r.guided
    recs = [c.entity_id for c in r.recommendations]
    assert r.intent == "recommend" and g["action"] == "recommend" and set(g["items"]) == {4, 5, 7}
    assert recs and set(recs) <= {4, 5, 7} and [n.entity_id for n in r.tree] == [12]  # reason: the accepted Action
    assert [e for e, _ in r.ranked] and {e for e, _ in r.ranked} == {4, 5, 7}
    assert r.act_text.startswith("[ Recommend ( Action (")
    s.feedback(recs[0], "like")
    r2 = s.say("more", GUIDED)  # a liked recommendation is not a rejection
    assert s.guided.history == [] and not set(recs) & {c.entity_id for c in r2.recommendations}
    # Action movies are used up: Action is relaxed and the other movies are candidates
    assert r2.guided["relaxed"] == [12] and {c.entity_id for c in r2.recommendations} <= {6, 8}
    s.say("something else", GUIDED)
    assert s.guided.history == [-2]


def test_width_and_leaf_cap_apply(guided_engine):
    s = guided_engine("recommend").new_session()
    r = s.say("action from the 80s", WalkControls(threshold=0.0, width=1, max_leaves=1, guided=True))
    assert len(r.recommendations) == 1 and r.recommendations[0].entity_id in (4, 7)


def test_state_round_trip_keeps_pending_question(guided_engine):
    eng = guided_engine("ask")
    s = eng.new_session()
    s.say("i like action", GUIDED)
    a = s.guided.pending["attribute"]
    state = json.loads(json.dumps(s.to_state()))
    assert state["guided"]["pending"] == {"kind": "ask", "attribute": a}
    s2 = Session.from_state(eng, state)
    assert s2.guided == s.guided
    assert s2.results[-1].guided == s.results[-1].guided
    r = s2.say("yes", GUIDED)
    assert r.guided["answered"] == a and a in s2.guided.accepted
    old = dict(state)
    old.pop("guided")  # a state saved before guided mode existed
    assert Session.from_state(eng, old).guided == GuidedState()
    bad = dict(state, guided={"history": [5]})
    with pytest.raises(ValueError, match="history"):
        Session.from_state(eng, bad)
    bad = dict(state, guided={"pending": {"kind": "ask", "attribute": 99}})
    with pytest.raises(ValueError, match="not a KG entity"):
        Session.from_state(eng, bad)


def test_guided_flag_off_or_no_guide(guided_engine, make_engine):
    s = guided_engine("ask").new_session()
    r = s.say("i like action", WalkControls())
    assert r.guided is None and s.guided == GuidedState()
    plain = make_engine("recommend").new_session()  # engine without a guide: the flag is ignored
    r = plain.say("i like action", GUIDED)
    assert r.guided is None and r.intent == "recommend"


def test_bundle_carries_the_guide(tmp_path, guide_run, tiny_guide, tiny_bert, tiny_linker, walker_factory,
                                  tiny_gen_dir, engine_kg_dir):  # fmt: skip
    import crwalker.engine.bundle as B
    from crwalker.checkpoint import save_checkpoint
    from data_scripts.utils.io import write_json

    w = walker_factory(tiny_linker.kg, tiny_bert[2], seed=3)
    ck = tmp_path / "run" / "best.safetensors"
    save_checkpoint(ck, w, torch.optim.Adam(w.parameters()), {**w.cfg.__dict__, "epochs": 1}, {"epoch": 1})
    write_json(ck.parent / "features.json", {"fingerprint": "tiny"})
    cfg = B.BuildConfig(
        walker=str(ck), generator=str(tiny_gen_dir), kg=str(engine_kg_dir), out=str(tmp_path / "bundle"),
        results=str(tmp_path), guide=guide_run.run_dir, movielens=guide_run.movielens,
    )  # fmt: skip
    with pytest.raises(B.BundleError, match="guide: .*not the data"):  # the tiny run needs --min-attr-items 1
        B.build_bundle(cfg, ["build"])
    assert not (tmp_path / "bundle").exists()
    man = B.build_bundle(dataclasses.replace(cfg, movie_min_attr_items=1), ["build"])
    out = tmp_path / "bundle"
    assert man["guide"]["policy"] == "scpr" and "guide policy" in man["sizes_bytes"]
    assert B.verify_bundle(out, engine_kg_dir) == []
    eng = Engine.load(bundle=out, kg=engine_kg_dir, device="cpu", bert=tiny_bert[:2], linker=tiny_linker)
    st = GuideState([12], [], set(), [1])
    got, want = eng.guide.decide(st), tiny_guide.decide(st)  # fp16 in the bundle: same decision, close scores
    assert got.kind == want.kind and got.items == want.items
    np.testing.assert_allclose(got.scores, want.scores, atol=1e-2)
    no_guide = B.build_bundle(dataclasses.replace(cfg, guide="", out=str(tmp_path / "b2")), ["build"])
    assert no_guide["guide"] is None
    b2 = Engine.load(bundle=tmp_path / "b2", kg=engine_kg_dir, device="cpu", bert=tiny_bert[:2], linker=tiny_linker)
    assert b2.guide is None
    # rebuilding with the guide copied from the first bundle keeps the same policy files and entry
    b3 = B.build_bundle(dataclasses.replace(cfg, guide="", guide_from_bundle=str(out), out=str(tmp_path / "b3")), ["b"])
    assert b3["guide"]["policy"] == "scpr" and b3["guide"]["copied_from_bundle"] == man["created_utc"]
    assert {f: v for f, v in b3["files"].items() if f.startswith("guide/")} == {
        f: v for f, v in man["files"].items() if f.startswith("guide/")
    }
    assert B.verify_bundle(tmp_path / "b3", engine_kg_dir) == []
    with pytest.raises(B.BundleError, match="no guided-mode policy"):
        B.build_bundle(dataclasses.replace(cfg, guide_from_bundle=str(tmp_path / "b2"), out=str(tmp_path / "b4")), [])


# ------------------------------------------------------------------------------------------ real bundle
@pytest.mark.integration
def test_real_bundle_guided_conversation():
    bundle, kg = ROOT / "release" / "bundle", ROOT / "data" / "kg"
    if not (kg / "manifest.json").exists() or not (bundle / "manifest.json").exists():
        pytest.skip("needs release/bundle and data/kg (make data)")
    if not json.loads((bundle / "manifest.json").read_text()).get("guide"):
        pytest.skip("release bundle has no guided-mode policy")
    eng = Engine.load(bundle=bundle, kg=kg, device="cpu", gen_kwargs={"max_new_tokens": 8})
    assert eng.guide is not None and eng.guide.policy_name == "scpr"
    s = eng.new_session()
    g = WalkControls(guided=True)
    r1 = s.say("hi, I want to watch a movie tonight", g)
    assert r1.guided["action"] == "ask" and r1.intent == "query"
    a = r1.guided["attribute"]
    assert r1.guided["attribute_name"].lower() in r1.reply.lower() and eng.guide.is_attribute(a)
    r2 = s.say("Yes", g)
    assert r2.guided["answered"] == a and r2.guided["answer"] is True and a in s.guided.accepted
    assert r2.guided["n_candidates"] < r1.guided["n_candidates"]
    s2 = Session.from_state(eng, json.loads(json.dumps(s.to_state())))
    r3 = s2.say("no", g)
    assert r3.guided["answer"] is False and r3.guided["answered"] in s2.rejected
    for _ in range(6):  # the trained SCPR recommends once the candidate set is small enough
        if r3.guided["action"] == "recommend":
            break
        r3 = s2.say("yes", g)
    assert r3.guided["action"] == "recommend" and r3.recommendations
    assert {c.entity_id for c in r3.recommendations} <= set(r3.guided["items"])


def test_attributes_named_before_guided_mode_count(guided_engine):
    s = guided_engine("ask").new_session()
    s.say("i like action movies", WalkControls(threshold=0.0, width=5, max_leaves=10))  # free mode
    r = s.say("what else?", GUIDED)
    assert r.guided["accepted"] == [12] and r.guided["n_candidates"] == 3
    s.say("no action please", WalkControls())
    r = s.say("hmm", GUIDED)
    assert 12 not in r.guided["accepted"] and r.guided["n_candidates"] == 2  # Action and its movies are out


def test_decide_is_thread_safe(tiny_guide):
    import threading

    states = [GuideState([a], [], set(), [1] * (i % 3)) for i, a in enumerate([9, 10, 11, 12, 13, 14, 15] * 4)]
    want = [tiny_guide.decide(s) for s in states]
    got: dict[int, object] = {}

    def run(i0: int) -> None:
        for i in range(i0, len(states), 4):
            got[i] = tiny_guide.decide(states[i])

    threads = [threading.Thread(target=run, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [got[i] for i in range(len(states))] == want


@pytest.mark.integration
def test_anonymous_user_evaluation_runs():
    from crwalker.policies.guide import evaluate_anonymous

    run = ROOT / "runs" / "mcr" / "movie" / "scpr"
    if not (run / "policy.json").exists() or not (ROOT / "data" / "mcr" / "movie" / "meta.json").exists():
        pytest.skip("needs runs/mcr/movie/scpr and data/mcr/movie")
    cfg = GuideConfig(run_dir=str(run), kg=str(ROOT / "data" / "kg"))
    res = evaluate_anonymous(cfg, limit=40)
    assert res["per_user"]["n_sessions"] == res["mean_user"]["n_sessions"] == 40
    assert 0.0 <= res["mean_user"]["SR@15"] <= 1.0
