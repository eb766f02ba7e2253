"""Data files shipped with :mod:`kg_build` (``linking_handlabelled.jsonl``: see :mod:`kg_build.bench_linking`)."""
