"""``python -m kg_build <command> [options]``.

Commands: ``build`` (movie KG), ``labels`` (dialog-act labels for every split),
``bench-linking`` (entity-linking benchmark), ``link`` (link utterances). ``<command> --help`` lists options.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "build": ("kg_build.build", "build the movie KG from ../shared/datasets -> data/kg/"),
    "labels": ("kg_build.labels", "dialog-act labels for every ReDial split -> data/labels/"),
    "bench-linking": ("kg_build.bench_linking", "entity-linking benchmark -> results/linking.json"),
    "link": ("kg_build.link_cli", 'print the KG entities linked in "utterance" ... (or stdin lines)'),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"} or argv[0] not in COMMANDS:
        print(__doc__.strip())
        for name, (_, text) in COMMANDS.items():
            print(f"  {name:14s} {text}")
        if argv and argv[0] not in {"-h", "--help"}:
            print(f"\nerror: unknown command {argv[0]!r}", file=sys.stderr)
            return 2
        return 0 if argv else 2
    module = importlib.import_module(COMMANDS[argv[0]][0])
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
