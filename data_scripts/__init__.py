"""Raw dataset sources -> canonical JSONL (the first stage of the crwalker pipeline).

Shared low-level helpers (atomic IO, layered config, results files) live in
:mod:`data_scripts.utils` because this is the most upstream package: every later
stage (``kg_build``, ``crwalker``, ``ui``) may import it, never the other way round.
"""
