"""``python -m data_scripts.prepare <dataset> [options]``: raw sources -> canonical files.

Datasets: ``redial`` (canonical dialogue JSONL), ``movielens`` (ratings/movies JSONL),
``mcr`` (LastFM / LastFM* multi-round CRS data), ``gorecdial`` (GoRecDial, not available offline). ``<dataset> --help`` lists its options.
"""

from __future__ import annotations

import sys

from data_scripts.utils.cli import dispatch

COMMANDS = {
    "redial": ("data_scripts.redial", "ReDial dialogues -> data/redial/{train,valid,test}.jsonl"),
    "movielens": ("data_scripts.movielens", "MovieLens ml-latest-small / ml-100k -> data/movielens/"),
    "mcr": ("data_scripts.mcr", "LastFM / LastFM* MCR benchmark -> data/mcr/"),
    "gorecdial": ("data_scripts.gorecdial", "GoRecDial (ParlAI text format) -> data/gorecdial/"),
}


def main(argv: list[str] | None = None) -> int:
    return dispatch(__doc__, COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
