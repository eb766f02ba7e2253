import dataclasses
from typing import Literal

import pytest

from data_scripts.utils.config import build_parser, field, parse_config, to_dict


@dataclasses.dataclass
class Cfg:
    """Toy config."""

    lr: float = field(1e-3, "learning rate")
    epochs: int = field(3, "epochs")
    device: Literal["auto", "cpu", "cuda"] = field("auto", "device")
    amp: bool = field(False, "mixed precision")
    widths: list[int] = field([1, 2], "sweep")
    name: str | None = field(None, "run name")


def test_defaults():
    cfg = parse_config(Cfg, [])
    assert cfg == Cfg() and cfg.widths == [1, 2]


def test_file_then_cli_precedence(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("lr: 0.5\nepochs: 7\n")
    cfg = parse_config(Cfg, ["--config", str(f), "--epochs", "9", "--amp", "--widths", "3", "5"])
    assert (cfg.lr, cfg.epochs, cfg.amp, cfg.widths) == (0.5, 9, True, [3, 5])


def test_unknown_key_in_file_is_a_clear_error(tmp_path, capsys):
    f = tmp_path / "c.yaml"
    f.write_text("learning_rate: 0.5\n")
    with pytest.raises(SystemExit):
        parse_config(Cfg, ["--config", str(f)])
    assert "unknown option(s) ['learning_rate']" in capsys.readouterr().err


def test_bad_choice_and_bool(capsys):
    with pytest.raises(SystemExit):
        parse_config(Cfg, ["--device", "tpu"])
    with pytest.raises(SystemExit):
        parse_config(Cfg, ["--amp", "maybe"])


def test_help_lists_every_field_with_help():
    text = build_parser(Cfg).format_help()
    for flag, helptext in [("--lr", "learning rate"), ("--widths", "sweep"), ("--name", "run name")]:
        assert flag in text and helptext in text


def test_to_dict_is_json_ready():
    assert to_dict(Cfg()) == {"lr": 1e-3, "epochs": 3, "device": "auto", "amp": False, "widths": [1, 2], "name": None}


def test_positional_extras():
    import argparse

    from data_scripts.utils.config import parse_config_with_args

    parser = argparse.ArgumentParser()
    parser.add_argument("texts", nargs="*")
    cfg, extra = parse_config_with_args(Cfg, ["hello", "world", "--epochs", "2"], parser)
    assert cfg.epochs == 2 and extra == {"texts": ["hello", "world"]}
