"""Shared helpers: atomic file IO, layered dataclass configs, results JSON."""
