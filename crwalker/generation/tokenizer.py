"""A small byte-level BPE vocabulary for the from-scratch GPT-2 generator, trained on the TRAIN split only.

GPT-2's own 50k vocabulary makes the LM head the dominant cost of a compact model (a 4 x 256 GPT-2 spends
~80 % of its FLOPs and ~75 % of its weights on a 50k x 256 embedding). Replies in ReDial use a few thousand
word types, so we train a GPT-2-style byte-level BPE (HF ``tokenizers``: ``ByteLevel`` pre-tokenizer and
decoder, no prefix space, like GPT-2) on the generator's own training text and save it as a
``GPT2TokenizerFast`` inside the checkpoint folder.

Training text (train split only; never valid/test): for every recommender turn the prompt with the act,
the delexicalised target and the reply with titles (the no-act target), i.e. exactly the strings the two
generators see. Extra vocabulary:

* ``<eos>`` -- special token, also used as padding (decoder-only, left-padded generation);
* movie placeholders ``[MOVIE]``, ``[MOVIE_1]`` .. ``[MOVIE_{n}]`` -- *added* (not special) tokens, so each
  is one token, never split by BPE, and kept by ``decode(skip_special_tokens=True)`` for filling;
* act-format tokens -- the intents ``[ Recommend``, ``[ Query``, ``[ Chat`` are learnt as ordinary BPE
  merges; the separators ``@``/``&``/``(``/``)``/``[``/``]`` are single bytes already.

Example::

    python -m crwalker.generation.tokenizer --vocab-size 6000 --out runs/generation/tokenizer_6k
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from data_scripts.utils.config import field, parse_config

EOS = "<eos>"
N_PLACEHOLDERS = 20


def placeholder_tokens(n: int = N_PLACEHOLDERS) -> list[str]:
    """``["[MOVIE]", "[MOVIE_1]", ..., "[MOVIE_n]"]``."""
    return ["[MOVIE]"] + [f"[MOVIE_{k}]" for k in range(1, n + 1)]


def train_bpe(
    texts: Iterable[str], vocab_size: int = 6000, min_frequency: int = 2, n_placeholders: int = N_PLACEHOLDERS
):
    """Train a byte-level BPE on ``texts`` and wrap it as a ``GPT2TokenizerFast``.

    Args:
        texts: Training strings (train split only).
        vocab_size: Target vocabulary size, including the 256 byte symbols and the special/added tokens.
        min_frequency: Minimum pair frequency for a merge.
        n_placeholders: Number of numbered movie placeholders added as single tokens.

    Returns:
        A ``GPT2TokenizerFast`` with ``eos_token = pad_token = "<eos>"`` and the placeholders as added tokens.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2TokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    tok.add_tokens(
        [
            AddedToken(t, single_word=False, lstrip=False, rstrip=False, normalized=False)
            for t in placeholder_tokens(n_placeholders)
        ]
    )
    fast = GPT2TokenizerFast(tokenizer_object=tok, eos_token=EOS, bos_token=EOS, unk_token=EOS, pad_token=EOS)
    fast.add_bos_token = False
    return fast


def training_texts(examples) -> Iterator[str]:
    """The generator strings of ``examples`` (:class:`~crwalker.generation.data.GenExample`): prompt with act,
    delexicalised target, reply with titles."""
    for e in examples:
        yield e.prompt(True)
        yield " " + e.reply
        yield " " + e.reply_text


@dataclass
class TokenizerConfig:
    """Train the generator's byte-level BPE vocabulary on the train split."""

    dialogues_dir: str = field("data/redial", "Folder with canonical {split}.jsonl dialogues.")
    labels_dir: str = field("data/labels", "Folder with {split}.jsonl act labels.")
    kg_dir: str = field("data/kg", "KG folder.")
    split: str = field("train", "Split to train on (train only: valid/test must stay unseen).")
    vocab_size: int = field(6000, "BPE vocabulary size (incl. bytes and special tokens).")
    min_frequency: int = field(2, "Minimum merge frequency.")
    out: str = field("runs/generation/tokenizer", "Output folder (GPT2TokenizerFast files).")


def main(argv: list[str] | None = None) -> Path:
    from kg_build.schema import KnowledgeGraph

    from .data import build_examples, load_dialogues

    cfg = parse_config(TokenizerConfig, argv)
    kg = KnowledgeGraph.load(cfg.kg_dir)
    exs = build_examples(
        load_dialogues(Path(cfg.dialogues_dir) / f"{cfg.split}.jsonl"), Path(cfg.labels_dir) / f"{cfg.split}.jsonl", kg
    )
    tok = train_bpe(training_texts(exs), cfg.vocab_size, cfg.min_frequency)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(out)
    print(f"{len(tok)} tokens from {len(exs)} {cfg.split} turns -> {out}")
    return out


if __name__ == "__main__":
    main()
