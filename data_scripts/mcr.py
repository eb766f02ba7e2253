"""LastFM / LastFM* multi-round conversational recommendation (MCR) data (EAR / SCPR / UNICORN layout).

Raw layout (``../shared/datasets/mcr/<dataset>/``, the UNICORN code release layout)::

    Graph_generate_data/item_dict.json        {"<item>": {"feature_index": [attr, ...], ...}, ...}
    Graph_generate_data/user_dict.json        {"<user>": {"friends": [user, ...], "like": [attr, ...]}, ...}
    Graph_generate_data/merged_tag_map.json   (lastfm, 33 attributes)   {"<raw tag id>": attr, ...}
    Graph_generate_data/original_tag_map.json (lastfm_star, 8,438 attrs) {"<raw tag id>": attr, ...}
    UI_Interaction_data/review_dict_{train,valid,test}.json   {"<user>": [item, ...], ...}
    ID_map_info/tag_reverse_map.json          {"<attr>": {"real_name": [name]}}   (optional, names only)
    transe_embeddings.npz                     (lastfm only) ui_emb [n_users + n_items, 64], feature_emb [n_attrs, 64]

Users, items and attributes are contiguous 0-based ids. :func:`load_raw` validates every id
(range, contiguity, item without attributes, split overlap) and raises
:class:`~data_scripts.utils.io.DataFormatError` naming the file.

Decision: the policies load the raw folder directly (about 1 s); ``python -m data_scripts.prepare mcr``
validates it and writes a canonical copy to ``data/mcr/<dataset>/`` (git-ignored) that
:func:`load_canonical` reads back identically:

``data.safetensors``
    ``item_attr_indptr`` int64 [n_items+1], ``item_attr_indices`` int64 [nnz] (CSR item -> sorted attributes),
    ``{train,valid,test}_pairs`` int64 [n, 2] (user, item) in file order, ``friends_indptr`` /
    ``friends_indices`` and ``likes_indptr`` / ``likes_indices`` (CSR user -> users / attributes).
``meta.json``
    ``{"schema_version", "dataset", "n_users", "n_items", "n_attrs", "attr_names", "stats", "sources"}``.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from data_scripts.utils.io import DataFormatError, atomic_write, read_json, sha256_file, write_json

SCHEMA_VERSION = 1
DATASETS = ("lastfm", "lastfm_star")
SPLITS = ("train", "valid", "test")
TAG_MAP = {"lastfm": "merged_tag_map.json", "lastfm_star": "original_tag_map.json"}
DEFAULT_ROOT = Path("../shared/datasets/mcr")


def _csr(lists: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    indptr = np.zeros(len(lists) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(x) for x in lists])
    indices = np.concatenate(lists).astype(np.int64) if lists else np.zeros(0, np.int64)
    return indptr, indices


def _uncsr(indptr: np.ndarray, indices: np.ndarray) -> list[np.ndarray]:
    return [indices[indptr[i] : indptr[i + 1]] for i in range(len(indptr) - 1)]


@dataclass
class MCRData:
    """One MCR benchmark in memory (ids are 0-based and contiguous).

    Attributes:
        name: ``lastfm`` or ``lastfm_star`` (or a fixture name).
        n_users, n_items, n_attrs: Entity counts.
        item_attrs: ``item_attrs[v]`` sorted int64 array of the attributes of item ``v``.
        splits: ``{"train"|"valid"|"test": int64 [n, 2]}`` observed (user, item) interactions.
        friends: ``friends[u]`` int64 array of user ids.
        likes: ``likes[u]`` int64 array of attribute ids.
        attr_names: Attribute display names (``str(id)`` when no name map exists).
        sources: Input file -> SHA-256.
    """

    name: str
    n_users: int
    n_items: int
    n_attrs: int
    item_attrs: list[np.ndarray]
    splits: dict[str, np.ndarray]
    friends: list[np.ndarray] = field(default_factory=list)
    likes: list[np.ndarray] = field(default_factory=list)
    attr_names: list[str] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)

    @cached_property
    def item_attr_csr(self) -> tuple[np.ndarray, np.ndarray]:
        """(indptr, indices) CSR of item -> attributes."""
        return _csr(self.item_attrs)

    @cached_property
    def attr_item_csr(self) -> tuple[np.ndarray, np.ndarray]:
        """(indptr, indices) CSR of attribute -> items (transpose of :attr:`item_attr_csr`)."""
        indptr, indices = self.item_attr_csr
        items = np.repeat(np.arange(self.n_items), np.diff(indptr))
        order = np.lexsort((items, indices))
        counts = np.bincount(indices, minlength=self.n_attrs)
        out = np.zeros(self.n_attrs + 1, np.int64)
        out[1:] = np.cumsum(counts)
        return out, items[order].astype(np.int64)

    def item_attr_matrix(self) -> np.ndarray:
        """Dense boolean ``[n_items, n_attrs]`` item-has-attribute matrix."""
        m = np.zeros((self.n_items, self.n_attrs), dtype=bool)
        indptr, indices = self.item_attr_csr
        m[np.repeat(np.arange(self.n_items), np.diff(indptr)), indices] = True
        return m

    def user_items(self, split: str = "train") -> list[np.ndarray]:
        """``out[u]`` = items of user ``u`` in ``split``."""
        pairs = self.splits[split]
        order = np.argsort(pairs[:, 0], kind="stable")
        counts = np.bincount(pairs[:, 0], minlength=self.n_users)
        return np.split(pairs[order, 1], np.cumsum(counts)[:-1])

    def stats(self) -> dict:
        nnz = sum(len(a) for a in self.item_attrs)
        return {
            "n_users": self.n_users,
            "n_items": self.n_items,
            "n_attrs": self.n_attrs,
            "item_attr_pairs": nnz,
            "attrs_per_item": round(nnz / max(self.n_items, 1), 3),
            **{f"{s}_interactions": int(len(p)) for s, p in self.splits.items()},
        }


def _int_key(path: Path, key: str) -> int:
    try:
        return int(key)
    except ValueError as exc:
        raise DataFormatError(path, None, f"key {key!r} is not an integer id") from exc


def _id_list(path: Path, owner: str, values, hi: int, what: str) -> np.ndarray:
    if not isinstance(values, list) or not all(isinstance(x, int) and not isinstance(x, bool) for x in values):
        raise DataFormatError(path, None, f"{owner}: expected a list of integer {what} ids, got {values!r:.80}")
    arr = np.asarray(values, dtype=np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= hi):
        bad = int(arr[(arr < 0) | (arr >= hi)][0])
        raise DataFormatError(path, None, f"{owner}: {what} id {bad} outside [0, {hi})")
    return arr


def _read(path: Path, sources: dict[str, str]):
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: file not found (expected the UNICORN/EAR LastFM layout, see data_scripts/mcr.py)"
        )
    sources[str(path)] = sha256_file(path)
    data = read_json(path)
    if not isinstance(data, dict):
        raise DataFormatError(path, None, f"expected a JSON object, got {type(data).__name__}")
    return data


def load_raw(root: str | Path, name: str | None = None) -> MCRData:
    """Read and validate a raw LastFM-layout folder.

    Args:
        root: The dataset folder (e.g. ``../shared/datasets/mcr/lastfm``).
        name: Dataset name; defaults to the folder name. Chooses the tag map file
            (``original_tag_map.json`` for ``lastfm_star``, else ``merged_tag_map.json``).

    Raises:
        FileNotFoundError: a required file is missing (message names it).
        DataFormatError: an id is malformed, out of range or non-contiguous.
    """
    root = Path(root)
    name = name or root.name
    g, ui = root / "Graph_generate_data", root / "UI_Interaction_data"
    sources: dict[str, str] = {}
    tag_path = g / TAG_MAP.get(name, "merged_tag_map.json")
    tag_map = _read(tag_path, sources)
    attr_ids = sorted(set(tag_map.values()))
    n_attrs = len(attr_ids)
    if attr_ids != list(range(n_attrs)):
        raise DataFormatError(tag_path, None, f"attribute ids must be contiguous 0..{n_attrs - 1}")

    item_path = g / "item_dict.json"
    raw_items = _read(item_path, sources)
    keys = sorted(_int_key(item_path, k) for k in raw_items)
    n_items = len(keys)
    if keys != list(range(n_items)):
        raise DataFormatError(item_path, None, f"item ids must be contiguous 0..{n_items - 1}")
    item_attrs = []
    for v in range(n_items):
        rec = raw_items[str(v)]
        if not isinstance(rec, dict) or "feature_index" not in rec:
            raise DataFormatError(item_path, None, f"item {v}: missing 'feature_index'")
        arr = np.unique(_id_list(item_path, f"item {v}", rec["feature_index"], n_attrs, "attribute"))
        if arr.size == 0:
            raise DataFormatError(item_path, None, f"item {v}: has no attributes (the simulator needs at least one)")
        item_attrs.append(arr)

    user_path = g / "user_dict.json"
    raw_users = _read(user_path, sources)
    ukeys = sorted(_int_key(user_path, k) for k in raw_users)
    raw_splits = {s: _read(ui / f"review_dict_{s}.json", sources) for s in SPLITS}
    # The user space is the union of user_dict.json and the splits (LastFM's user_dict.json lacks
    # 2 of the 1,801 users; they get no friends/likes). Ids must be 0..n-1 with no gap.
    all_users = set(ukeys).union(
        *({_int_key(ui / f"review_dict_{s}.json", k) for k in r} for s, r in raw_splits.items())
    )
    n_users = max(all_users) + 1 if all_users else 0
    if min(all_users, default=0) < 0:
        raise DataFormatError(user_path, None, "negative user id")
    friends, likes = [], []
    for u in range(n_users):
        rec = raw_users.get(str(u), {"friends": [], "like": []})
        if not isinstance(rec, dict):
            raise DataFormatError(user_path, None, f"user {u}: expected an object with 'friends' and 'like'")
        friends.append(_id_list(user_path, f"user {u} friends", rec.get("friends", []), n_users, "user"))
        likes.append(_id_list(user_path, f"user {u} like", rec.get("like", []), n_attrs, "attribute"))

    splits: dict[str, np.ndarray] = {}
    for s in SPLITS:
        p = ui / f"review_dict_{s}.json"
        raw = raw_splits[s]
        rows = []
        for u in sorted(_int_key(p, k) for k in raw):
            if not 0 <= u < n_users:
                raise DataFormatError(p, None, f"user id {u} outside [0, {n_users})")
            for v in _id_list(p, f"user {u}", raw[str(u)], n_items, "item"):
                rows.append((u, int(v)))
        splits[s] = np.asarray(rows, dtype=np.int64).reshape(-1, 2)
    train = {(int(a), int(b)) for a, b in splits["train"]}
    leak = [tuple(x) for x in splits["test"].tolist() if tuple(x) in train]
    if leak:
        raise DataFormatError(
            ui / "review_dict_test.json", None, f"{len(leak)} test pairs also in train, e.g. {leak[0]}"
        )

    names = [str(i) for i in range(n_attrs)]
    rev = root / "ID_map_info" / "tag_reverse_map.json"
    if rev.exists():
        for k, val in read_json(rev).items():
            i = int(k)
            if 0 <= i < n_attrs and isinstance(val, dict) and val.get("real_name"):
                names[i] = str(val["real_name"][0])
    return MCRData(name, n_users, n_items, n_attrs, item_attrs, splits, friends, likes, names, sources)


def load_transe(path: str | Path, data: MCRData) -> dict[str, np.ndarray]:
    """Load released TransE embeddings (``np.load(allow_pickle=False)``) and split them.

    Returns:
        ``{"user": [n_users, d], "item": [n_items, d], "attr": [n_attrs, d]}`` float32.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: file not found")
    with np.load(path, allow_pickle=False) as z:
        if "ui_emb" not in z or "feature_emb" not in z:
            raise DataFormatError(path, None, f"expected arrays 'ui_emb' and 'feature_emb', got {sorted(z.keys())}")
        ui, feat = z["ui_emb"].astype(np.float32), z["feature_emb"].astype(np.float32)
    if ui.shape[0] != data.n_users + data.n_items or feat.shape[0] != data.n_attrs:
        raise DataFormatError(
            path,
            None,
            f"shapes ui_emb {ui.shape} / feature_emb {feat.shape} do not match "
            f"{data.n_users} users + {data.n_items} items / {data.n_attrs} attributes",
        )
    return {"user": ui[: data.n_users], "item": ui[data.n_users :], "attr": feat}


def save_canonical(data: MCRData, out_dir: str | Path) -> None:
    """Write ``data.safetensors`` + ``meta.json`` (see module docstring) atomically."""
    from safetensors.numpy import save

    out_dir = Path(out_dir)
    tensors = {}
    tensors["item_attr_indptr"], tensors["item_attr_indices"] = data.item_attr_csr
    tensors["friends_indptr"], tensors["friends_indices"] = _csr(data.friends)
    tensors["likes_indptr"], tensors["likes_indices"] = _csr(data.likes)
    for s, p in data.splits.items():
        tensors[f"{s}_pairs"] = np.ascontiguousarray(p, dtype=np.int64)
    with atomic_write(out_dir / "data.safetensors", "wb") as fh:
        fh.write(save(tensors))
    meta = {
        "schema_version": SCHEMA_VERSION,
        "dataset": data.name,
        "n_users": data.n_users,
        "n_items": data.n_items,
        "n_attrs": data.n_attrs,
        "attr_names": data.attr_names,
        "stats": data.stats(),
        "sources": data.sources,
    }
    write_json(out_dir / "meta.json", meta)


def load_canonical(out_dir: str | Path) -> MCRData:
    """Read a folder written by :func:`save_canonical`."""
    from safetensors.numpy import load_file

    out_dir = Path(out_dir)
    meta = read_json(out_dir / "meta.json")
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise DataFormatError(
            out_dir / "meta.json", None, f"schema_version {meta.get('schema_version')} != {SCHEMA_VERSION}"
        )
    t = load_file(str(out_dir / "data.safetensors"))
    return MCRData(
        name=meta["dataset"],
        n_users=meta["n_users"],
        n_items=meta["n_items"],
        n_attrs=meta["n_attrs"],
        item_attrs=_uncsr(t["item_attr_indptr"], t["item_attr_indices"]),
        splits={s: t[f"{s}_pairs"] for s in SPLITS if f"{s}_pairs" in t},
        friends=_uncsr(t["friends_indptr"], t["friends_indices"]),
        likes=_uncsr(t["likes_indptr"], t["likes_indices"]),
        attr_names=list(meta["attr_names"]),
        sources=dict(meta.get("sources", {})),
    )


def load(dataset: str, root: str | Path = DEFAULT_ROOT) -> MCRData:
    """Load ``dataset`` from ``root/<dataset>`` (or ``root`` itself if it is a dataset folder)."""
    root = Path(root)
    folder = root if (root / "Graph_generate_data").exists() else root / dataset
    if not folder.exists():
        raise FileNotFoundError(f"{folder}: MCR dataset folder not found (give --data-root)")
    return load_raw(folder, dataset)


def main(argv: list[str] | None = None) -> int:
    """``python -m data_scripts.prepare mcr [--root R] [--out data/mcr] [--datasets lastfm lastfm_star]``."""
    ap = argparse.ArgumentParser(
        prog="prepare mcr", description="Validate LastFM/LastFM* and write data/mcr/<dataset>/"
    )
    ap.add_argument("--root", default=str(DEFAULT_ROOT), help="Folder holding lastfm/ and lastfm_star/.")
    ap.add_argument("--out", default="data/mcr", help="Output folder (git-ignored).")
    ap.add_argument("--datasets", nargs="*", default=list(DATASETS))
    args = ap.parse_args(argv)
    for ds in args.datasets:
        data = load(ds, args.root)
        save_canonical(data, Path(args.out) / ds)
        print(json.dumps({"dataset": ds, **data.stats()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
