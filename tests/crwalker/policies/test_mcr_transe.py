import numpy as np
import pytest

from crwalker.policies.transe import train_transe, triples


@pytest.mark.parametrize("p_norm", [1.0, 2.0])
def test_transe_returns_the_normalised_vectors_it_scores_with(toy, p_norm):
    emb, st = train_transe(toy, dim=8, epochs=2, batch_size=64, p_norm=p_norm, log=lambda *_: None)
    assert emb.shape == (toy.n_users + toy.n_items + toy.n_attrs, 8) and emb.dtype == np.float32
    norms = np.linalg.norm(emb, ord=p_norm, axis=1)
    np.testing.assert_allclose(norms, 1.0, rtol=1e-5)
    assert st["epochs_run"] == 2 and st["n_triples"] == len(triples(toy)[0])


def test_dot_auc_hand_computed():
    """2 users, 3 items; user 0 -> item 0, user 1 -> item 2 held out; with n_neg = 1 the negative draws are
    fixed by the seed, so the AUC is the share of pairs whose positive dot product beats (ties: half) theirs."""
    from types import SimpleNamespace

    from crwalker.policies.transe import dot_auc

    emb = np.array([[1, 0], [0, 1], [1, 0], [0.5, 0.5], [0, 1]], np.float32)  # users 0-1, items 0-2
    data = SimpleNamespace(n_users=2, n_items=3, splits={"test": np.array([[0, 0], [1, 2]])})
    neg = np.random.default_rng(0).integers(3, size=(2, 1))
    pos_scores = [1.0, 1.0]  # u0·i0, u1·i2
    neg_scores = [float(emb[u] @ emb[2 + neg[k, 0]]) for k, u in enumerate([0, 1])]
    want = np.mean([1.0 if p > n else 0.5 if p == n else 0.0 for p, n in zip(pos_scores, neg_scores, strict=True)])
    assert dot_auc(emb, data, "test", n_neg=1, seed=0) == pytest.approx(want)
