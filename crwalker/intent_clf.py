"""Fine-tuned intent classifier late-fused with Eq. 4: ``python -m crwalker.intent_clf`` (not in the paper).

CR-Walker's intent selector (Eq. 4) reads frozen-encoder vectors. This module adapts the same encoder with a
LoRA adapter (peft; rank ``lora_r`` on the attention ``query``/``value`` projections) and a 2-layer head on
``[mean-pooled tokens of (x_t, y_{t-1}); s_t]`` (user utterance first, the system's previous turn second,
``s_t`` the dialogue-state features of :mod:`crwalker.state`), trained with cross-entropy on the train
split's intent labels; the epoch with the best valid accuracy is kept.

At inference the walker adds ``intent_clf_weight * log P_clf(i | x_t, y_{t-1}, s_t)`` to its Eq. 4 logits
(:meth:`crwalker.walker.CRWalker.encode`); the weight is chosen on valid by :mod:`crwalker.tune`
(``--intent-clf``), never on test.

Artefact ``<runs>/<name>/intent_clf.safetensors``: only the trainable tensors (``lora_*`` of the adapter
and ``head.*``), fp32, with metadata ``{"config": IntentClfConfig fields, "base_fingerprint":
crwalker.encoders.model_fingerprint of the base encoder, "train_state": per-epoch valid accuracy}``; the base
encoder is the one named by ``config.bert`` (the MiniLM of PyPI by default), never stored. A ``.json`` twin
repeats the metadata. Written atomically.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from crwalker.state import STATE_DIM
from data_scripts.utils.config import field, parse_config, to_dict
from data_scripts.utils.io import atomic_write, write_json

ARTEFACT = "intent_clf.safetensors"


@dataclasses.dataclass
class IntentClfConfig:
    """Fine-tune the LoRA intent classifier (`python -m crwalker.intent_clf`)."""

    name: str = field("intent_clf", "Run name: the classifier goes to <runs>/<name>/intent_clf.safetensors.")
    runs: str = field("runs", "Folder for run outputs.")
    kg: str = field("data/kg", "Knowledge-graph folder (for the Table-1 candidates of the examples).")
    labels: str = field("data/labels", "Folder with {train,valid}.jsonl dialog-act label rows.")
    dialogues: str = field("data/redial", "Folder with canonical {train,valid}.jsonl ReDial dialogues.")
    bert: str = field("minilm", "Base encoder: 'minilm' (offline PyPI model), a hub name or a folder.")
    max_length: int = field(128, "Max tokens of the (x_t, y_{t-1}) pair (longest part truncated first).")
    lora_r: int = field(8, "LoRA rank.")
    lora_alpha: int = field(16, "LoRA scaling alpha.")
    lora_dropout: float = field(0.1, "Dropout on the LoRA input.")
    lora_targets: list[str] = field(["query", "value"], "Module names that get LoRA adapters.")
    head_hidden: int = field(128, "Hidden size of the classification head.")
    dropout: float = field(0.1, "Dropout before the head.")
    epochs: int = field(4, "Training epochs (one-cycle schedule over all of them).")
    lr: float = field(5e-4, "Peak AdamW learning rate.")
    weight_decay: float = field(1e-2, "AdamW weight decay.")
    batch_size: int = field(32, "Examples per step (batches are built from length-sorted buckets).")
    seed: int = field(0, "Random seed (init, LoRA dropout, data order).")
    device: str = field("auto", "'auto', 'cpu', 'cuda:0', ...")
    threads: int = field(1, "torch.set_num_threads on CPU.")
    max_train_examples: int = field(0, "Use only the first N training examples (0 = all); for smoke runs.")
    max_valid_examples: int = field(0, "Use only the first N validation examples (0 = all).")


@dataclasses.dataclass
class IntentClfBatch:
    """Token ids ``[B, T]``, attention mask ``[B, T]`` and state features ``[B, STATE_DIM]``."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    state: torch.Tensor

    def to(self, device) -> IntentClfBatch:
        return IntentClfBatch(*(t.to(device) for t in (self.input_ids, self.attention_mask, self.state)))


class IntentClassifier(nn.Module):
    """``P(i | x_t, y_{t-1}, s_t) = softmax(head([mean_pool(BERT_LoRA(x_t, y_{t-1})); s_t]))``."""

    def __init__(self, bert: nn.Module, cfg: IntentClfConfig, tokenizer=None):
        super().__init__()
        from peft import LoraConfig, get_peft_model

        self.tokenizer = tokenizer  # the base encoder's tokenizer (for :meth:`log_probs`)
        self.max_length = cfg.max_length

        for p in bert.parameters():
            p.requires_grad_(False)
        lcfg = LoraConfig(
            r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, target_modules=cfg.lora_targets
        )
        self.bert = get_peft_model(bert, lcfg)
        hid = int(bert.config.hidden_size)
        self.head = nn.Sequential(
            nn.Dropout(cfg.dropout),
            nn.Linear(hid + STATE_DIM, cfg.head_hidden),
            nn.ReLU(),
            nn.Linear(cfg.head_hidden, 3),
        )

    def forward(self, batch: IntentClfBatch) -> torch.Tensor:
        """Intent logits ``[B, 3]`` (order of :data:`crwalker.candidates.INTENT_NAMES`)."""
        h = self.bert(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
        m = batch.attention_mask.unsqueeze(-1).to(h.dtype)
        pooled = (h * m).sum(1) / m.sum(1).clamp_min(1.0)
        return self.head(torch.cat([pooled, batch.state.to(h.dtype)], -1))

    def log_probs(
        self, pairs: Sequence[Sequence[tuple[str, str]]], states: Sequence[Sequence[float]], batch_size: int = 128
    ) -> torch.Tensor:
        """``log P_clf`` ``[N, 3]`` for each example's ``(y, x)`` pairs (the last one is read) and state."""
        ids = tokenize(self.tokenizer, [clf_text(p) for p in pairs], self.max_length)
        return predict_log_probs(self, ids, states, batch_size)

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """The tensors the artefact stores (LoRA + head)."""
        names = {n for n, p in self.named_parameters() if p.requires_grad}
        return {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items() if k in names}


def clf_text(pairs: Sequence[tuple[str, str]]) -> tuple[str, str]:
    """``(x_t, y_{t-1})`` of an example's last ``(y_{t-1}, x_t)`` pair (Eq. 1 order reversed)."""
    y, x = pairs[-1] if pairs else ("", "")
    return x, y


def tokenize(tok, texts: Sequence[tuple[str, str]], max_length: int) -> list[list[int]]:
    """Token ids of each ``(x_t, y_{t-1})`` pair, unpadded."""
    if not texts:
        return []
    a, b = zip(*texts, strict=True)
    return tok(list(a), list(b), truncation="longest_first", max_length=max_length)["input_ids"]


def make_batch(ids: Sequence[Sequence[int]], states: Sequence[Sequence[float]], pad_id: int = 0) -> IntentClfBatch:
    """Right-padded :class:`IntentClfBatch`."""
    T = max(len(x) for x in ids)
    inp = torch.full((len(ids), T), pad_id, dtype=torch.long)
    mask = torch.zeros(len(ids), T, dtype=torch.long)
    for i, x in enumerate(ids):
        inp[i, : len(x)] = torch.as_tensor(x, dtype=torch.long)
        mask[i, : len(x)] = 1
    st = torch.as_tensor([list(s) for s in states], dtype=torch.float32).reshape(len(ids), STATE_DIM)
    return IntentClfBatch(inp, mask, st)


def bucket_batches(lengths: Sequence[int], batch_size: int, seed: int) -> list[list[int]]:
    """Batches of similar-length examples (less padding), in a seeded random order."""
    g = np.random.default_rng(seed)
    idx = np.argsort(np.asarray(lengths) + g.random(len(lengths)), kind="stable")  # random tie order
    batches = [idx[i : i + batch_size].tolist() for i in range(0, len(idx), batch_size)]
    return [batches[i] for i in g.permutation(len(batches))]


@torch.inference_mode()
def predict_log_probs(
    clf: IntentClassifier, ids: Sequence[Sequence[int]], states: Sequence[Sequence[float]], batch_size: int = 128
) -> torch.Tensor:
    """``log P_clf`` ``[N, 3]`` (float32, CPU) in length-sorted batches; ``clf`` in eval mode."""
    was = clf.training
    clf.eval()
    dev = next(clf.parameters()).device
    out = torch.zeros(len(ids), 3)
    order = np.argsort([len(x) for x in ids], kind="stable")
    for i in range(0, len(order), batch_size):
        sel = order[i : i + batch_size].tolist()
        batch = make_batch([ids[j] for j in sel], [states[j] for j in sel]).to(dev)
        out[sel] = clf(batch).log_softmax(-1).float().cpu()
    clf.train(was)
    return out


def classifier_doc(cfg: IntentClfConfig, base_fp: str, state: dict) -> dict:
    """The artefact's metadata document."""
    return {"config": to_dict(cfg), "base_fingerprint": base_fp, "train_state": state}


def save_classifier(path: str | Path, tensors: dict[str, torch.Tensor], doc: dict) -> Path:
    """Write the artefact of the module docstring atomically (+ ``.json`` twin)."""
    from safetensors.torch import save

    path = Path(path)
    blob = save(tensors, metadata={"doc": json.dumps(doc, sort_keys=True)})
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "wb") as fh:
        fh.write(blob)
    write_json(path.with_suffix(".json"), doc)
    return path


def read_classifier(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """``(tensors, doc)`` of an artefact (no pickle)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: intent classifier not found (train it with `python -m crwalker.intent_clf`)")
    with safe_open(str(path), framework="pt", device="cpu") as f:
        doc = json.loads(f.metadata()["doc"])
        return {k: f.get_tensor(k) for k in f.keys()}, doc  # noqa: SIM118


def build_classifier(tensors: dict[str, torch.Tensor], doc: dict, device="cpu", encoder=None, check_base=True):
    """The classifier (with its tokenizer) for inference (eval mode, adapter merged into the base) from artefact
    tensors and document.

    Args:
        tensors: the LoRA + head tensors (fp16 allowed; cast to fp32).
        doc: the artefact document (config, base fingerprint).
        device: target device.
        encoder: optional preloaded ``(tokenizer, base bert)``; otherwise ``config.bert`` is loaded. The base
            is modified in place (LoRA layers injected), so never pass an encoder used elsewhere.
        check_base: refuse a base encoder whose fingerprint differs from the recorded one.

    Raises:
        ValueError: base encoder mismatch or tensors that do not fit the configuration.
    """
    from crwalker.encoders import load_bert, model_fingerprint

    cfg = IntentClfConfig(
        **{k: v for k, v in doc["config"].items() if k in {f.name for f in dataclasses.fields(IntentClfConfig)}}
    )
    tok, bert = encoder if encoder is not None else load_bert(cfg.bert, "cpu")
    if check_base:
        fp = model_fingerprint(bert, cfg.max_length, "mean")
        if fp != doc["base_fingerprint"]:
            raise ValueError(
                f"intent classifier was trained on base encoder {doc['base_fingerprint']}, got {fp} ({cfg.bert}); "
                "install the same encoder or retrain with `python -m crwalker.intent_clf`"
            )
    clf = IntentClassifier(bert, cfg, tok)
    want = set(clf.trainable_state())
    if set(tensors) != want:
        raise ValueError(f"intent classifier tensors do not match its config: {sorted(set(tensors) ^ want)[:5]} ...")
    clf.load_state_dict({k: v.float() for k, v in tensors.items()}, strict=False)
    clf.bert = clf.bert.merge_and_unload()  # inference only: LoRA folded into the base weights
    return clf.to(device).eval()


def load_classifier(path: str | Path, device="cpu") -> tuple[IntentClassifier, dict]:
    """``(classifier, doc)`` from an artefact file."""
    tensors, doc = read_classifier(path)
    return build_classifier(tensors, doc, device), doc


def attach_log_probs(examples: Sequence, clf: IntentClassifier, batch_size: int = 128) -> None:
    """Set ``intent_clf_logp`` (3 floats) on every example (reads ``pairs`` and ``state``)."""
    lp = clf.log_probs([e.pairs for e in examples], [e.state for e in examples], batch_size)
    for e, row in zip(examples, lp.tolist(), strict=True):
        e.intent_clf_logp = row


def train_classifier(cfg: IntentClfConfig, encoder=None, log=print) -> dict:
    """Train on the train split, keep the best-valid-accuracy epoch; returns the train state.

    Args:
        cfg: the configuration.
        encoder: optional preloaded ``(tokenizer, base bert)`` (tests pass a tiny random BERT).
        log: message sink.
    """
    from tqdm import tqdm

    from crwalker.candidates import CandidateSets
    from crwalker.data import build_examples, load_dialogues
    from crwalker.device import resolve_device, seed_everything
    from crwalker.encoders import load_bert, model_fingerprint
    from kg_build.schema import KnowledgeGraph

    device = resolve_device(cfg.device)
    if device.type == "cpu" and cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    t0 = time.perf_counter()
    cands = CandidateSets(KnowledgeGraph.load(cfg.kg))
    data = {}
    for split, limit in (("train", cfg.max_train_examples), ("valid", cfg.max_valid_examples)):
        dlg = load_dialogues(Path(cfg.dialogues) / f"{split}.jsonl")
        data[split] = build_examples(Path(cfg.labels) / f"{split}.jsonl", dlg, cands, 1, limit)
    tok, bert = encoder if encoder is not None else load_bert(cfg.bert, "cpu")
    base_fp = model_fingerprint(bert, cfg.max_length, "mean")
    clf = IntentClassifier(bert, cfg, tok).to(device)
    ids = {s: tokenize(tok, [clf_text(e.pairs) for e in ex], cfg.max_length) for s, ex in data.items()}
    y = torch.as_tensor([e.intent for e in data["train"]], dtype=torch.long)
    yv = np.asarray([e.intent for e in data["valid"]])
    params = [p for p in clf.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    lengths = [len(x) for x in ids["train"]]
    steps = cfg.epochs * len(bucket_batches(lengths, cfg.batch_size, 0))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=max(steps, 1), pct_start=0.1)
    out = Path(cfg.runs) / cfg.name / ARTEFACT
    history, best, best_tensors = [], -1.0, {}
    for epoch in range(1, cfg.epochs + 1):
        clf.train()
        total, n = 0.0, 0
        batches = bucket_batches(lengths, cfg.batch_size, cfg.seed * 1000 + epoch)
        for sel in tqdm(batches, desc=f"epoch {epoch}", unit="batch", mininterval=10):
            batch = make_batch([ids["train"][i] for i in sel], [data["train"][i].state for i in sel], tok.pad_token_id)
            loss = nn.functional.cross_entropy(clf(batch.to(device)), y[sel].to(device))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(sel)
            n += len(sel)
        lp = predict_log_probs(clf, ids["valid"], [e.state for e in data["valid"]])
        acc = float((lp.argmax(-1).numpy() == yv).mean())
        history.append({"epoch": epoch, "train_loss": total / max(n, 1), "valid_intent_acc": acc})
        log(f"epoch {epoch}: train loss {total / max(n, 1):.4f}, valid intent accuracy {acc:.4f}")
        if acc > best:  # written at once, so a killed run leaves its best epoch so far
            best, best_tensors = acc, clf.trainable_state()
            state = {"best_epoch": epoch, "best_valid_intent_acc": acc, "history": history}
            save_classifier(out, best_tensors, classifier_doc(cfg, base_fp, state))
    state = {**state, "history": history, "minutes": round((time.perf_counter() - t0) / 60, 2)}
    save_classifier(out, best_tensors, classifier_doc(cfg, base_fp, state))
    return state


def main(argv: list[str] | None = None) -> int:
    train_classifier(parse_config(IntentClfConfig, argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
