"""End-to-end train / evaluate CLIs on the toy fixture (checkpoints, resume, results file)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crwalker.policies import evaluate, train

ROOT = Path(__file__).resolve().parents[2] / "fixtures" / "mcr"


def _args(tmp_path: Path, policy: str, *extra: str) -> list[str]:
    return [
        "--policy", policy, "--dataset", "toy", "--data-root", str(ROOT), "--run-dir", str(tmp_path / policy),
        "--fm-dir", str(tmp_path / "fm"), "--fm-epochs", "2", "--fm-dim", "8", "--results", str(tmp_path / "mcr.json"),
        "--device", "auto", *extra,
    ]  # fmt: skip


def test_rule_policy_train_and_evaluate(tmp_path):
    assert train.main(_args(tmp_path, "max_entropy")) == 0
    assert (tmp_path / "fm" / "fm.safetensors").exists() and (tmp_path / "max_entropy" / "policy.json").exists()
    assert evaluate.main(_args(tmp_path, "max_entropy")) == 0
    res = json.loads((tmp_path / "mcr.json").read_text())
    cell = res["toy"]["max_entropy"]
    assert cell["n_sessions"] == 3 and len(cell["SR_curve"]) == 15 and cell["train_minutes"] >= 0
    assert res["lastfm"]["kgensam"]["status"] == "missing" and res["movie"]["unicorn"]["status"] == "missing"


def test_scpr_train_evaluate(tmp_path):
    assert train.main(_args(tmp_path, "scpr", "--episodes", "3", "--batch-size", "4")) == 0
    assert evaluate.main(_args(tmp_path, "scpr")) == 0


def test_unicorn_train_resume_evaluate(tmp_path):
    extra = ["--episodes", "2", "--batch-size", "4", "--transe-epochs", "1", "--dim", "8", "--hidden", "8",
             "--checkpoint-every", "1"]  # fmt: skip
    assert train.main(_args(tmp_path, "unicorn", *extra)) == 0
    meta = json.loads((tmp_path / "unicorn" / "policy.json").read_text())
    assert meta["episode"] == 2 and "link_auc_test" in meta["stats"]["transe"]
    extra[1] = "4"
    assert train.main(_args(tmp_path, "unicorn", *extra, "--resume")) == 0
    assert json.loads((tmp_path / "unicorn" / "policy.json").read_text())["episode"] == 4
    assert evaluate.main(_args(tmp_path, "unicorn", "--dim", "8", "--hidden", "8")) == 0


def test_unicorn_fm_embeddings_initialise_from_the_shared_fm(tmp_path):
    """``--embeddings fm``: the node table and the frozen preference vectors start as the FM's user/item/attr rows."""
    from crwalker.policies.common import MCRConfig, load_data, unicorn_init
    from crwalker.policies.fm import FM
    from data_scripts.utils.config import parse_config

    extra = ["--embeddings", "fm", "--episodes", "2", "--batch-size", "4", "--dim", "8", "--hidden", "8"]
    assert train.main(_args(tmp_path, "unicorn", *extra)) == 0
    fm = FM.load(tmp_path / "fm")
    cfg = parse_config(MCRConfig, _args(tmp_path, "unicorn", *extra))
    init = unicorn_init(cfg, load_data(cfg), tmp_path / "unicorn")
    assert init.shape == (len(fm.user) + len(fm.item) + len(fm.attr), 8)
    assert (init[: len(fm.user)] == fm.user).all() and (init[-len(fm.attr) :] == fm.attr).all()
    meta = json.loads((tmp_path / "unicorn" / "policy.json").read_text())
    fm_minutes = json.loads((tmp_path / "fm" / "fm.json").read_text())["train_seconds"] / 60
    assert meta["train_minutes"] >= fm_minutes  # the FM's training time is counted
    assert evaluate.main(_args(tmp_path, "unicorn", *extra)) == 0
    with pytest.raises(SystemExit, match="fm-dim"):
        unicorn_init(
            parse_config(MCRConfig, _args(tmp_path, "unicorn", "--embeddings", "fm", "--dim", "16")), None, tmp_path
        )


def test_unicorn_snapshots_curve_and_report(tmp_path):
    from crwalker.policies import report

    extra = ["--episodes", "2", "--batch-size", "4", "--transe-epochs", "1", "--dim", "8", "--hidden", "8",
             "--checkpoint-every", "1", "--snapshot-every", "1"]  # fmt: skip
    assert train.main(_args(tmp_path, "unicorn", *extra)) == 0
    snaps = tmp_path / "unicorn" / "snapshots"
    assert sorted(p.name for p in snaps.iterdir()) == ["ep000001.safetensors", "ep000002.safetensors"]
    curve = tmp_path / "curve.json"
    args = _args(tmp_path, "unicorn", "--dim", "8", "--hidden", "8", "--checkpoint", str(snaps), "--curve", str(curve))
    assert evaluate.main(args) == 0
    cells = json.loads(curve.read_text())["toy"]["unicorn"]
    assert sorted(cells) == ["1", "2"] and all(len(c["SR_curve"]) == 15 for c in cells.values())
    assert evaluate.main(_args(tmp_path, "unicorn", "--dim", "8", "--hidden", "8")) == 0
    out = [str(tmp_path / n) for n in ("t.png", "f4.png", "f5.png")]
    rargs = ["--results", str(tmp_path / "mcr.json"), "--png", out[0], "--curve", str(curve), "--fig4", out[1]]
    assert report.main([*rargs, "--fig5", out[2]]) == 0
    assert all(Path(p).stat().st_size > 0 for p in out)


def test_kgensam_train_evaluate(tmp_path):
    extra = ["--episodes", "3", "--batch-size", "4", "--ns-steps", "2", "--as-episodes", "2"]
    assert train.main(_args(tmp_path, "kgensam", *extra)) == 0
    meta = json.loads((tmp_path / "kgensam" / "policy.json").read_text())
    assert meta["episode"] == 3 and "mean_auc_gain" in meta["stats"]["active_sampler"]
    assert evaluate.main(_args(tmp_path, "kgensam")) == 0
    cell = json.loads((tmp_path / "mcr.json").read_text())["toy"]["kgensam"]
    assert cell["n_sessions"] == 3 and len(cell["SR_curve"]) == 15


def test_unknown_policy_is_explicit(tmp_path):
    with pytest.raises(SystemExit):
        train.main(_args(tmp_path, "nope"))


def test_movie_without_built_folder_is_explicit(tmp_path):
    with pytest.raises(SystemExit, match="crwalker.policies.movie_data"):
        train.main(_args(tmp_path, "max_entropy", "--dataset", "movie", "--movie-dir", str(tmp_path / "nope")))


def test_bench_unicorn_paired_against_itself(tmp_path):
    """The speed benchmark runs both arms on the same transitions; against itself the parameters stay equal."""
    import numpy as np
    from safetensors.numpy import save_file

    from crwalker.policies import bench_unicorn
    from data_scripts.mcr import load_raw

    data = load_raw(ROOT / "toy")
    run = tmp_path / "run"
    run.mkdir()
    n = data.n_users + data.n_items + data.n_attrs
    save_file({"emb": np.random.default_rng(0).normal(size=(n, 8)).astype(np.float32)}, str(run / "transe.safetensors"))
    out = tmp_path / "speed.json"
    ref = Path(bench_unicorn.current.__file__)
    argv = ["--dataset", "toy", "--data-root", str(ROOT), "--run-dir", str(run), "--reference", str(ref),
            "--episodes", "2", "--warm", "8", "--batch-size", "4", "--dim", "8", "--hidden", "8", "--out", str(out)]  # fmt: skip
    assert bench_unicorn.main(argv) == 0
    res = json.loads(out.read_text())["toy"]
    assert [r["impl"] for r in res["rows"]] == ["current", "reference"]
    assert res["max_param_diff"] < 1e-6 and res["same_trajectory_steps"]
    assert all(r["episodes"] == 2 and r["episodes_per_s"] > 0 for r in res["rows"])
