"""Act-conditioned response generation (CR-Walker §3.5) and its evaluation; see ``docs/generation.md``."""
