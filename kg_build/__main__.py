"""``python -m kg_build <command> [options]``.

Commands: ``build`` (movie KG), ``labels`` (dialog-act labels for every split),
``bench-linking`` (entity-linking benchmark), ``train-linker`` (the linker's span classifier),
``link`` (link utterances). ``<command> --help`` lists options.
"""

from __future__ import annotations

import sys

from data_scripts.utils.cli import dispatch

COMMANDS = {
    "build": ("kg_build.build", "build the movie KG from ../shared/datasets -> data/kg/"),
    "labels": ("kg_build.labels", "dialog-act labels for every ReDial split -> data/labels/"),
    "bench-linking": ("kg_build.bench_linking", "entity-linking benchmark -> results/linking.json"),
    "train-linker": ("kg_build.train_linker", "train the linker's span classifier -> kg_build/resources/*.json"),
    "train-remakes": ("kg_build.train_remakes", "train the linker's opt-in same-title movie chooser (off by default)"),
    "link": ("kg_build.link_cli", 'print the KG entities linked in "utterance" ... (or stdin lines)'),
}


def main(argv: list[str] | None = None) -> int:
    return dispatch(__doc__, COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
