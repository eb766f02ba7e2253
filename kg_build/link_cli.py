"""``python -m kg_build link "utterance" ...``: show the KG entities the entity linker finds.

Reads utterances from the arguments (or one per line from standard input when none are given) and
prints one row per linked span: offsets, surface text, entity name, type, score, source, negation.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from data_scripts.utils.config import field, parse_config_with_args
from kg_build.linker import EntityLinker
from kg_build.schema import KnowledgeGraph


@dataclasses.dataclass
class LinkConfig:
    """Link utterances to KG entities and print the spans."""

    kg: str = field("data/kg", "KG folder built by `python -m kg_build build`.")
    use_ner: bool = field(True, "Also run spaCy's statistical NER (slower, rarely adds links).")


def format_spans(text: str, spans, kg: KnowledgeGraph) -> str:
    """A readable block: the utterance, then one line per span."""
    lines = [f"> {text}"]
    if not spans:
        lines.append("  (no entity)")
    for s in spans:
        e = kg.entities[s.entity]
        neg = "  NEGATED" if s.negated else ""
        lines.append(f"  [{s.start}:{s.end}] {s.text!r} -> {e.name} ({e.type}) score={s.score:.2f} via {s.source}{neg}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=LinkConfig.__doc__)
    parser.add_argument("texts", nargs="*", help="utterances to link (default: one per line from stdin)")
    cfg, extra = parse_config_with_args(LinkConfig, argv, parser)
    texts = extra["texts"]
    kg = KnowledgeGraph.load(cfg.kg)
    linker = EntityLinker.from_kg(kg, use_ner=cfg.use_ner)
    if not texts:
        texts = [line.rstrip("\n") for line in sys.stdin if line.strip()]
    for text, spans in zip(texts, linker.link_many(texts), strict=True):
        print(format_spans(text, spans, kg))
    return 0
