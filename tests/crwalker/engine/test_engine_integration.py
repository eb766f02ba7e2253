"""Integration: the committed release bundle (else runs/walker_e1 + a generator) with the real KG, MiniLM and
linker; skipped when neither model nor data/kg exists."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
WALKER = ROOT / "runs" / "walker_e1" / "best.safetensors"
KG = ROOT / "data" / "kg"
BUNDLE = ROOT / "release" / "bundle"
GENERATORS = [ROOT / "runs" / "generation" / "smoke_gpt2_scratch" / "best"]


@pytest.mark.integration
def test_real_walker_session():
    from crwalker.engine import Engine, WalkControls

    if not (KG / "manifest.json").exists():
        pytest.skip("needs data/kg (make data)")
    gen = next((g for g in GENERATORS if (g / "generator.json").exists()), None)
    if (BUNDLE / "manifest.json").exists():
        eng = Engine.load(bundle=BUNDLE, kg=KG, device="cpu", gen_kwargs={"max_new_tokens": 8})
    elif WALKER.exists() and gen is not None:
        eng = Engine.load(walker=WALKER, generator=gen, kg=KG, device="cpu", gen_kwargs={"max_new_tokens": 8})
    else:
        pytest.skip("needs release/bundle or runs/walker_e1/best.safetensors + a generator checkpoint")
    s = eng.new_session()
    r1 = s.say("any scary movies like Alien?", WalkControls())
    assert r1.linked and r1.intent in ("recommend", "query", "chat") and r1.reply
    alien = [x["entity_id"] for x in r1.linked if x["type"] == "movie"]
    assert alien and alien[0] not in [c.entity_id for c in r1.recommendations]
    r2 = s.say("not horror, no Tom Cruise", WalkControls())
    banned = {x["entity_id"] for x in r2.linked if x["negated"]}
    assert banned and banned <= s.rejected
    for n in r2.tree:
        assert n.entity_id not in banned and not {c.entity_id for c in n.children} & banned
    assert r2.timings["reasoning_ms"] < 5000
