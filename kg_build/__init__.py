"""Movie knowledge graph, entity linker and dialog-act labels (second pipeline stage)."""
