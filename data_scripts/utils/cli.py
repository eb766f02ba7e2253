"""Sub-command dispatch shared by ``python -m data_scripts.prepare`` and ``python -m kg_build``."""

from __future__ import annotations

import importlib
import sys


def dispatch(doc: str, commands: dict[str, tuple[str, str]], argv: list[str] | None = None) -> int:
    """Run ``commands[argv[0]]``'s module ``main(argv[1:])``; print usage for none/unknown/--help.

    Args:
        doc: Usage text printed before the command list.
        commands: name -> (module path with a ``main(argv) -> int``, one-line description).
        argv: Arguments (default ``sys.argv[1:]``).

    Returns:
        The command's exit code; 2 for a missing or unknown command, 0 for ``--help``.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in commands:
        module = importlib.import_module(commands[argv[0]][0])
        return int(module.main(argv[1:]) or 0)
    print(doc.strip())
    width = max(len(n) for n in commands) + 2
    for name, (_, text) in commands.items():
        print(f"  {name:{width}s} {text}")
    if argv and argv[0] not in {"-h", "--help"}:
        print(f"\nerror: unknown command {argv[0]!r}", file=sys.stderr)
        return 2
    return 0 if argv else 2
