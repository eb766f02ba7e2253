"""On-disk cache of frozen encoder outputs, so training never re-encodes text.

Layout: ``<cache>/<model-fingerprint>/shard-<sha>.safetensors``; each shard holds

* ``keys``  uint8 ``[N, 20]`` - SHA-1 of ``y + "\\x1f" + x`` for each (system, user) pair,
* ``feats`` float32 ``[N, H]`` - the [CLS] vector of that pair,

and ``meta.json`` records the encoder name and hidden size. The fingerprint hashes the encoder's
config, weights and truncation length (:func:`crwalker.encoders.model_fingerprint`), so a different
model or setting never reuses stale vectors. Shards are written atomically; new texts go to a new
shard, existing shards are never rewritten.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save

from data_scripts.utils.io import atomic_write, read_json, write_json


def pair_key(pair: tuple[str, str]) -> bytes:
    return hashlib.sha1(f"{pair[0]}\x1f{pair[1]}".encode()).digest()


class FeatureCache:
    """Key -> [CLS] vector store for one encoder fingerprint."""

    def __init__(self, root: str | Path, fingerprint: str):
        self.dir = Path(root) / fingerprint
        self.index: dict[bytes, tuple[int, int]] = {}
        self.shards: list[torch.Tensor] = []
        if self.dir.exists():
            for f in sorted(self.dir.glob("shard-*.safetensors")):
                t = load_file(str(f))
                keys = t["keys"].numpy()
                s = len(self.shards)
                self.shards.append(t["feats"])
                for r in range(keys.shape[0]):
                    self.index.setdefault(keys[r].tobytes(), (s, r))

    def __contains__(self, key: bytes) -> bool:
        return key in self.index

    def add(self, keys: list[bytes], feats: torch.Tensor, meta: dict | None = None) -> Path:
        """Persist a new shard (atomic) and index it."""
        if not keys:
            raise ValueError("no keys to add")
        karr = torch.from_numpy(np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), 20).copy())
        name = hashlib.sha256(b"".join(keys)).hexdigest()[:16]
        path = self.dir / f"shard-{name}.safetensors"
        with atomic_write(path, "wb") as fh:
            fh.write(save({"keys": karr, "feats": feats.contiguous().float()}))
        if meta is not None and not (self.dir / "meta.json").exists():
            write_json(self.dir / "meta.json", meta)
        s = len(self.shards)
        self.shards.append(feats.float())
        for r, k in enumerate(keys):
            self.index.setdefault(k, (s, r))
        return path

    def matrix(self, keys: list[bytes]) -> torch.Tensor:
        """Stack the vectors of ``keys`` (all must be cached)."""
        missing = [k for k in keys if k not in self.index]
        if missing:
            raise KeyError(f"{len(missing)} keys missing from feature cache {self.dir}")
        return torch.stack([self.shards[s][r] for s, r in (self.index[k] for k in keys)]) if keys else torch.empty(0)

    def meta(self) -> dict:
        return read_json(self.dir / "meta.json") if (self.dir / "meta.json").exists() else {}


def attach_features(
    examples: list,
    cache_root: str | Path,
    bert: str,
    max_length: int,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    encoder=None,
    log=print,
    pooling: str = "cls",
    intent_pairs: bool = False,
) -> tuple[torch.Tensor, dict]:
    """Give every example ``feat_rows`` into a returned feature matrix, encoding only uncached pairs.

    Args:
        examples: objects with ``pairs`` (list of (y, x)) and a ``feat_rows`` list to fill.
        cache_root: feature cache root (e.g. ``cache/features``).
        bert: encoder name for :func:`crwalker.encoders.load_bert` (ignored when ``encoder`` given).
        max_length: BERT truncation length.
        encoder: optional preloaded ``(tokenizer, model)`` (tests pass a tiny random BERT).
        pooling: ``"cls"`` or ``"mean"`` (:func:`crwalker.encoders.encode_pairs`); part of the cache key.
        intent_pairs: also encode each example's ``intent_pair`` (the user utterance alone, for walkers with
            ``intent_utterance``) and store its row in ``intent_row``.

    Returns:
        ``(feats [U, H], stats)`` with ``stats = {"pairs", "unique", "encoded", "seconds", "fingerprint"}``.
    """
    from crwalker.encoders import encode_pairs, load_bert, model_fingerprint

    uniq: dict[bytes, tuple[str, str]] = {}
    for ex in examples:
        for pr in [*ex.pairs, ex.intent_pair] if intent_pairs else ex.pairs:
            uniq.setdefault(pair_key(pr), pr)
    tok, model = encoder if encoder is not None else load_bert(bert, device)
    fp = model_fingerprint(model, max_length, pooling)
    cache = FeatureCache(cache_root, fp)
    todo = [k for k in uniq if k not in cache]
    t0 = time.perf_counter()
    if todo:
        log(f"encoding {len(todo)} new utterance pairs with {bert} (fingerprint {fp})")
        feats = encode_pairs([uniq[k] for k in todo], tok, model, batch_size, max_length, True, pooling)
        meta = {"bert": bert, "hidden": int(model.config.hidden_size), "max_length": max_length, "pooling": pooling}
        cache.add(todo, feats, meta=meta)
    seconds = time.perf_counter() - t0
    keys = list(uniq)
    row = {k: i for i, k in enumerate(keys)}
    for ex in examples:
        ex.feat_rows = [row[pair_key(pr)] for pr in ex.pairs]
        if intent_pairs:
            ex.intent_row = row[pair_key(ex.intent_pair)]
    mat = cache.matrix(keys) if keys else torch.zeros(0, int(model.config.hidden_size))
    stats = {
        "pairs": sum(len(e.pairs) for e in examples),
        "unique": len(keys),
        "encoded": len(todo),
        "seconds": round(seconds, 2),
        "fingerprint": fp,
    }
    return mat, stats


def dialogue_pair_sets(dialogues_path: str | Path, history: int) -> list:
    """One object per recommender turn of a dialogues file with the ``pairs`` of Eq. 1 (for pre-extraction)."""
    from types import SimpleNamespace

    from crwalker.data import exchange_pairs, load_dialogues

    out = []
    for d in load_dialogues(dialogues_path).values():
        for i, t in enumerate(d["turns"]):
            if t.get("role") == "recommender":
                pairs = exchange_pairs(d["turns"], i, history)
                solo = ("", pairs[-1][1]) if pairs else ("", "")  # crwalker.data.Example.intent_pair
                out.append(SimpleNamespace(pairs=pairs, feat_rows=[], intent_pair=solo, intent_row=-1))
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m crwalker.features``: pre-extract the BERT features of every recommender turn."""
    import dataclasses

    from crwalker.device import resolve_device
    from data_scripts.utils.config import field, parse_config

    @dataclasses.dataclass
    class FeaturesConfig:
        """Pre-extract frozen-encoder features for all recommender turns of the canonical dialogues."""

        dialogues: str = field("data/redial", "Folder with {split}.jsonl canonical dialogues.")
        splits: list[str] = field(["train", "valid", "test"], "Splits to extract.")
        cache: str = field("cache/features", "Feature cache root.")
        bert: str = field("minilm", "Encoder ('minilm', a hub name or a folder).")
        bert_max_length: int = field(256, "Max BERT tokens per pair.")
        bert_pooling: str = field("mean", "Utterance pooling: 'cls' or 'mean' (as ModelConfig.bert_pooling).")
        history: int = field(3, "l_max exchanges per turn.")
        batch: int = field(64, "Encoding batch size.")
        device: str = field("auto", "Device.")
        threads: int = field(1, "torch CPU threads.")

    cfg = parse_config(FeaturesConfig, argv)
    device = resolve_device(cfg.device)
    if device.type == "cpu":
        torch.set_num_threads(cfg.threads)
    for split in cfg.splits:
        items = dialogue_pair_sets(Path(cfg.dialogues) / f"{split}.jsonl", cfg.history)
        _, stats = attach_features(
            items,
            cache_root=cfg.cache,
            bert=cfg.bert,
            max_length=cfg.bert_max_length,
            batch_size=cfg.batch,
            device=device,
            pooling=cfg.bert_pooling,
            intent_pairs=True,
        )
        print(f"{split}: {len(items)} recommender turns, {stats}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
