import json

from data_scripts.utils.results import format_table, write_results


def test_write_results_adds_provenance(tmp_path):
    data = tmp_path / "d.txt"
    data.write_text("x")
    out = tmp_path / "results" / "r.json"
    write_results(out, {"R@1": 1.5}, config={"lr": 0.1}, data_files=[data])
    got = json.loads(out.read_text())
    assert got["R@1"] == 1.5 and got["config"] == {"lr": 0.1}
    assert set(got) == {"R@1", "config", "data_sha256", "git_commit"}
    assert got["data_sha256"][str(data)] == "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"


def test_format_table():
    assert format_table([{"a": 1.234, "b": "x"}], ["a", "b"]) == "| a | b |\n|---|---|\n| 1.23 | x |"
