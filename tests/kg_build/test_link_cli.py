from kg_build.link_cli import format_spans
from kg_build.linker import LinkedSpan
from kg_build.schema import tiny_kg_for_tests


def test_format_spans_names_entity_type_and_negation():
    kg = tiny_kg_for_tests()
    horror = kg.by_name["Horror"]
    text = "not horror"
    out = format_spans(text, [LinkedSpan(4, 10, "horror", horror, 1.0, "ruler", True)], kg)
    assert out.splitlines() == ["> not horror", "  [4:10] 'horror' -> Horror (genre) score=1.00 via ruler  NEGATED"]
    assert format_spans("hi", [], kg).splitlines()[1] == "  (no entity)"
