"""``python -m data_scripts.prepare <dataset> [options]``: raw sources -> canonical files.

Datasets: ``redial`` (canonical dialogue JSONL), ``movielens`` (ratings/movies JSONL),
``mcr`` (LastFM / LastFM* multi-round CRS data), ``gorecdial`` (GoRecDial, not available offline). ``<dataset> --help`` lists its options.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "redial": ("data_scripts.redial", "ReDial dialogues -> data/redial/{train,valid,test}.jsonl"),
    "movielens": ("data_scripts.movielens", "MovieLens ml-latest-small / ml-100k -> data/movielens/"),
    "mcr": ("data_scripts.mcr", "LastFM / LastFM* MCR benchmark -> data/mcr/"),
    "gorecdial": ("data_scripts.gorecdial", "GoRecDial (ParlAI text format) -> data/gorecdial/"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"} or argv[0] not in COMMANDS:
        print(__doc__.strip())
        for name, (_, text) in COMMANDS.items():
            print(f"  {name:10s} {text}")
        if argv and argv[0] not in {"-h", "--help"}:
            print(f"\nerror: unknown dataset {argv[0]!r}", file=sys.stderr)
            return 2
        return 0 if argv else 2
    module = importlib.import_module(COMMANDS[argv[0]][0])
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
