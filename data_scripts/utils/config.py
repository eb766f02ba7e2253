"""Typed, layered configuration: dataclass defaults < YAML/JSON file < command line.

Every config is a (flat) dataclass whose fields carry ``metadata={"help": ...}``.
:func:`parse_config` builds an :mod:`argparse` parser from it, so ``--help`` lists every
field with its help text, type and default, and values are validated by type.

Example:
    >>> @dataclasses.dataclass
    ... class TrainConfig:
    ...     lr: float = field(1e-3, "Adam learning rate.")
    >>> cfg = parse_config(TrainConfig, ["--lr", "3e-4"])
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


def field(default: Any = dataclasses.MISSING, help: str = "", **kwargs: Any) -> Any:  # noqa: A002
    """A dataclass field with help text; mutable defaults are wrapped in a factory."""
    if isinstance(default, (list, dict, set)):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata={"help": help}, **kwargs)
    return dataclasses.field(default=default, metadata={"help": help}, **kwargs)


def _base_type(tp: Any) -> tuple[Any, bool]:
    """Strip ``Optional``; return (inner type, is_optional)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _str2bool(v: str) -> bool:
    low = v.lower()
    if low in {"1", "true", "yes", "y", "on"}:
        return True
    if low in {"0", "false", "no", "n", "off"}:
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean (true/false), got {v!r}")


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON mapping of field -> value."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"config file {path} not found")
    text = path.read_text(encoding="utf-8")
    data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"config file {path} must contain a mapping of field: value")
    return data


def from_dict(cls: type[T], data: dict[str, Any], source: str = "config") -> T:
    """Build ``cls`` from a mapping, rejecting unknown keys with a clear message."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{source}: unknown option(s) {unknown}; valid options: {sorted(names)}")
    return cls(**data)


def build_parser(cls: type, parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """Add one ``--option`` per dataclass field (help text from field metadata)."""
    parser = parser or argparse.ArgumentParser(description=(cls.__doc__ or "").strip().splitlines()[0])
    parser.add_argument("--config", type=str, default=None, help="YAML/JSON file with option values (CLI wins).")
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp, _ = _base_type(hints[f.name])
        default = (
            f.default
            if f.default is not dataclasses.MISSING
            else (f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        )
        help_text = f"{f.metadata.get('help', '')} (default: {default!r})"
        flag = "--" + f.name.replace("_", "-")
        kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": help_text}
        origin = typing.get_origin(tp)
        if tp is bool:
            kwargs.update(type=_str2bool, nargs="?", const=True, metavar="BOOL")
        elif origin in (list, tuple):
            inner = (typing.get_args(tp) or (str,))[0]
            kwargs.update(type=inner, nargs="*")
        elif typing.get_origin(tp) is typing.Literal:
            choices = typing.get_args(tp)
            kwargs.update(type=type(choices[0]), choices=choices)
        elif tp in (int, float, str):
            kwargs.update(type=tp)
        else:
            kwargs.update(type=str)
        parser.add_argument(flag, **kwargs)
    return parser


def parse_config_with_args(
    cls: type[T], argv: list[str] | None = None, parser: argparse.ArgumentParser | None = None
) -> tuple[T, dict[str, Any]]:
    """Like :func:`parse_config`, for parsers with extra (e.g. positional) arguments.

    Returns:
        The config and a dict of the parsed values that are not config fields.
    """
    parser = build_parser(cls, parser)
    ns = vars(parser.parse_args(argv))
    names = {f.name for f in dataclasses.fields(cls)}
    extra = {k: ns.pop(k) for k in list(ns) if k not in names and k != "config"}
    values: dict[str, Any] = {}
    cfg_path = ns.pop("config", None)
    if cfg_path:
        values.update(load_config_file(cfg_path))
    values.update(ns)
    try:
        return from_dict(cls, values, source=cfg_path or "command line"), extra
    except (TypeError, ValueError) as exc:
        parser.error(str(exc))
        raise  # unreachable


def parse_config(cls: type[T], argv: list[str] | None = None, parser: argparse.ArgumentParser | None = None) -> T:
    """Parse ``argv`` into ``cls`` with precedence defaults < ``--config`` file < CLI flags."""
    return parse_config_with_args(cls, argv, parser)[0]


def to_dict(cfg: Any) -> dict[str, Any]:
    """Dataclass -> plain dict (paths as strings), for manifests and results files."""
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))
