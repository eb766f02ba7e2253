"""Helpers of train / evaluate: snapshot progress, the --fm-holdout split, the --episode-split pairs."""

from __future__ import annotations

from pathlib import Path

from crwalker.policies.evaluate import snapshot_progress


def test_snapshot_progress_reads_the_train_log(tmp_path: Path):
    (tmp_path / "train_log.csv").write_text(
        "episode,return,epsilon,steps,updates,seconds\n10,0.1,0.5,70,0,6.0\n20,0.2,0.4,150,30,60.0\n30,0.3,0.3,230,110,120.0\n"
    )
    # final policy: 30 episodes, 3.5 train minutes = 2.0 RL minutes + 1.5 pretraining (TransE) minutes
    assert snapshot_progress(tmp_path / "snapshots" / "ep000020.safetensors", tmp_path, 30, 3.5) == (20, 2.5)
    assert snapshot_progress(tmp_path / "snapshots" / "ep000030.safetensors", tmp_path, 30, 3.5) == (30, 3.5)
    # not a snapshot name: the final policy's numbers
    assert snapshot_progress(tmp_path / "other.safetensors", tmp_path, 30, 3.5) == (30, 3.5)
    # no train log: the episode from the name, no minutes
    assert snapshot_progress(tmp_path / "ep000020.safetensors", tmp_path / "missing", 30, 3.5) == (20, 0.0)


def test_fm_holdout_split_is_a_seeded_partition():
    import numpy as np

    from crwalker.policies.common import fm_holdout_split

    pairs = np.arange(40, dtype=np.int64).reshape(20, 2)
    fm, rl = fm_holdout_split(pairs, 0.25, seed=3)
    assert len(fm) == 15 and len(rl) == 5
    assert sorted(map(tuple, np.concatenate([fm, rl]).tolist())) == sorted(map(tuple, pairs.tolist()))
    again = fm_holdout_split(pairs, 0.25, seed=3)
    assert np.array_equal(again[0], fm) and np.array_equal(again[1], rl)
    same, same2 = fm_holdout_split(pairs, 0.0, seed=3)
    assert same is pairs and same2 is pairs


def test_episode_pairs_from_valid_leave_out_the_selection_sessions():
    import dataclasses

    import numpy as np
    import pytest

    from crwalker.policies.common import MCRConfig, episode_pairs
    from crwalker.policies.env import sessions

    rng = np.random.default_rng(0)
    splits = {s: rng.integers(0, 1000, size=(n, 2)) for s, n in (("train", 50), ("valid", 30), ("test", 30))}
    data = type("D", (), {"splits": splits})()
    cfg = MCRConfig(policy="unicorn", episode_split="valid", select_sessions=12, seed=5)
    got = episode_pairs(cfg, data)
    held = sessions(data, "valid", 12, 5)  # what `evaluate --split valid --limit 12 --seed 5` scores
    assert len(got) == 18 and len(held) == 12
    # together they are exactly the valid split, with no session in both
    both = sorted(map(tuple, np.concatenate([got, held]).tolist()))
    assert both == sorted(map(tuple, splits["valid"].tolist()))
    assert np.array_equal(episode_pairs(dataclasses.replace(cfg, episode_split="train"), data), splits["train"])
    assert len(episode_pairs(dataclasses.replace(cfg, select_sessions=0), data)) == 30
    with pytest.raises(SystemExit, match="episode-split"):
        episode_pairs(dataclasses.replace(cfg, episode_split="test"), data)
