"""Typed, flat configuration for the CR-Walker reasoning model, training and evaluation.

Parsed with :func:`data_scripts.utils.config.parse_config` (defaults < ``--config x.yaml`` < CLI).
:class:`TrainConfig` and :class:`EvalConfig` extend :class:`ModelConfig`, so a run's
``config.json`` fully describes the model that its checkpoint holds.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from data_scripts.utils.config import field


@dataclasses.dataclass
class ModelConfig:
    """Hyper-parameters of the reasoning model (CR-Walker §3.3-3.6, Appendix B)."""

    dim: int = field(128, "Hidden size d of utterance, entity, portrait and intent embeddings.")
    bert: str = field("minilm", "Frozen utterance encoder: 'minilm' (offline PyPI model), a hub name or a folder.")
    bert_max_length: int = field(256, "Max BERT tokens per [y_{t-1}; x_t] pair (longer pairs are truncated).")
    bert_pooling: Literal["cls", "mean"] = field(
        "mean", "Pair vector of the frozen encoder: 'cls' ([CLS], the paper's) or 'mean' (masked mean of tokens)."
    )
    history: int = field(3, "l_max: number of (system, user) exchanges fed to the turn-level LSTM.")
    rgcn_layers: int = field(1, "Number L of R-GCN layers.")
    rgcn_bases: int = field(0, "Basis decomposition: number of bases (0 = full relation matrices).")
    rgcn_impl: Literal["rgcn", "fast"] = field("rgcn", "torch_geometric RGCNConv ('rgcn') or FastRGCNConv ('fast').")
    attn_hidden: int = field(64, "Hidden size of the portrait self-attention (Eq. 3).")
    intent_hidden: int = field(64, "Hidden size of the intent MLP (Eq. 4).")
    intent_state: bool = field(
        True, "Feed the dialogue-state features s_t (crwalker.state) to the intent MLP beside u_t (not in the paper)."
    )
    intent_utterance: bool = field(
        True,
        "Also feed the frozen-encoder vector of the user utterance x_t alone (the pair ('', x_t)) to the intent MLP "
        "(not in the paper; the [y_{t-1}; x_t] vectors of Eq. 1 dilute the request in the system's text).",
    )
    dropout: float = field(0.1, "Dropout on the utterance embedding.")
    threshold: float = field(0.5, "tau: an entity is selected when its score exceeds this (Eq. 7).")
    width: int = field(5, "m: at most this many entities are selected per hop.")
    neg_ratio: int = field(5, "Negative candidate movies sampled per positive at the recommend hop (training).")
    max_hop2_candidates: int = field(
        200, "Training only: cap on query/chat hop-2 candidates per parent (all gold + random others); 0 = no cap."
    )
    variant: Literal["full", "depth1", "portrait"] = field(
        "full", "full CR-Walker; depth1: hop-2 only (no hop-1 walk); portrait: R-GCN + portrait, no walking."
    )
    # ---- inference-time calibration (not in the paper; tuned on valid by `python -m crwalker.tune`)
    intent_log_prior: list[float] = field(
        [0.0, 0.0, 0.0], "Added to the intent logits (recommend, query, chat) at inference: class-prior correction."
    )
    intent_clf: str = field(
        "", "Fine-tuned intent classifier artefact (crwalker.intent_clf) late-fused with Eq. 4 ('' = none)."
    )
    intent_clf_weight: float = field(
        0.0, "Weight of the classifier's log-probabilities added to the intent logits at inference (0 = off)."
    )
    fusion_popularity: float = field(0.0, "Score fusion weight of log(1 + train mention count) (0 = off).")
    fusion_cooccurrence: float = field(
        0.0, "Score fusion weight of log(1 + s * sum_c P(m | c)) over earlier-mentioned movies c (0 = off)."
    )
    fusion_cooc_scale: float = field(50.0, "s in the co-occurrence term of the score fusion.")
    fusion_kg: float = field(
        0.0, "Score fusion weight of log(1 + #mentioned non-movie entities adjacent to m) (0 = off)."
    )
    fusion_mentioned: float = field(0.0, "Score fusion weight of 1[m was mentioned before the turn] (0 = off).")
    fusion_recency: float = field(
        0.0, "Score fusion weight of 1/(1 + #movies first mentioned after m) for earlier-mentioned movies m (0 = off)."
    )


@dataclasses.dataclass
class TrainConfig(ModelConfig):
    """Train the CR-Walker reasoning model (`python -m crwalker.train`)."""

    name: str = field("walker", "Run name: outputs go to <runs>/<name>/.")
    runs: str = field("runs", "Folder for run outputs (checkpoints, logs).")
    kg: str = field("data/kg", "Knowledge-graph folder (kg_build format).")
    labels: str = field("data/labels", "Folder with {train,valid,test}.jsonl dialog-act label rows.")
    dialogues: str = field("data/redial", "Folder with canonical {train,valid,test}.jsonl ReDial dialogues.")
    cache: str = field("cache/features", "Feature cache root for frozen encoder outputs.")
    epochs: int = field(30, "Maximum number of epochs.")
    batch_size: int = field(32, "Examples per optimisation step (per process under DDP).")
    optimizer: Literal["adam", "adamw"] = field(
        "adamw", "adamw: decoupled weight decay (default, see docs/walker.md); adam: L2 decay inside Adam."
    )
    lr: float = field(1e-3, "Adam learning rate.")
    weight_decay: float = field(1e-2, "Adam weight decay.")
    lambda1: float = field(1.0, "lambda_1: weight of the hop-1 loss (Eq. 9).")
    lambda2: float = field(1.0, "lambda_2: weight of the hop-2 loss (Eq. 9).")
    patience: int = field(3, "Early stopping: epochs without validation improvement before stopping.")
    select_metric: str = field("R@10", "Validation metric used for early stopping / best checkpoint (higher=better).")
    seed: int = field(42, "Random seed (data order, negative sampling, dropout, init).")
    device: str = field("auto", "'auto' (CUDA if available), 'cpu', 'cuda:0', ...")
    threads: int = field(1, "torch.set_num_threads on CPU (the machine is shared).")
    resume: bool = field(False, "Continue from <runs>/<name>/last.safetensors if present.")
    max_train_examples: int = field(0, "Use only the first N training examples (0 = all); for smoke runs.")
    max_valid_examples: int = field(0, "Use only the first N validation examples (0 = all).")
    stop_after_epoch: int = field(0, "Exit after this epoch (0 = never); simulates a killed run for resume tests.")
    use_structured: bool = field(
        False, "Add text-free recommend examples from data/redial/structured_train.jsonl (portrait-only signal)."
    )
    encode_batch: int = field(64, "Batch size for the one-off BERT feature extraction.")
    refit: bool = field(
        False,
        "Train on train + valid for exactly --epochs epochs (no validation, no early stopping; best = last). Use it "
        "after the epochs were chosen on valid, then copy the tuning with `crwalker.tune --from-tuned`.",
    )
    log_every: int = field(50, "Steps between TensorBoard loss points.")


@dataclasses.dataclass
class EvalConfig:
    """Evaluate a trained CR-Walker run (`python -m crwalker.evaluate`)."""

    run: str = field("runs/walker", "Run folder with best.safetensors + config.json.")
    checkpoint: str = field("best", "Checkpoint stem inside the run folder ('best' or 'last').")
    split: str = field("test", "Label split to evaluate.")
    kg: str = field("data/kg", "Knowledge-graph folder.")
    labels: str = field("data/labels", "Label folder.")
    dialogues: str = field("data/redial", "Canonical dialogues folder.")
    cache: str = field("cache/features", "Feature cache root.")
    out: str = field("results/recommendation.json", "Results JSON (percentages).")
    plot: str = field("results/recommendation_width.png", "Width-sweep plot.")
    turns_out: str = field("", "Per-turn JSONL (default <run>/eval_<split>_turns.jsonl).")
    widths: list[int] = field([1, 2, 3, 5, 8], "Width sweep values of m.")
    depth1_run: str = field("", "Optional run trained with --variant depth1 (else inference-time ablation).")
    portrait_run: str = field("", "Optional run trained with --variant portrait (else inference-time ablation).")
    device: str = field("auto", "'auto', 'cpu', 'cuda:0', ...")
    threads: int = field(1, "torch.set_num_threads on CPU.")
    gold_intent_turns: bool = field(
        False, "Also write per-turn trees walked from the gold intent (<turns>_gold_intent.jsonl, for generation)."
    )
    max_examples: int = field(0, "Evaluate only the first N examples (0 = all); for smoke runs.")
    batch_size: int = field(64, "Examples per forward pass.")
    encode_batch: int = field(64, "Batch size for BERT feature extraction of missing texts.")


MODEL_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(ModelConfig))


#: Values of fields added after checkpoints were first released, for configs that do not have them
#: (such checkpoints were trained without the feature; the dataclass default is for new runs).
LEGACY_MODEL_DEFAULTS = {"bert_pooling": "cls", "intent_state": False, "intent_utterance": False}


def model_config_of(cfg: ModelConfig | dict) -> ModelConfig:
    """Extract the :class:`ModelConfig` part of a train/eval config (or of a ``config.json`` dict)."""
    d = cfg if isinstance(cfg, dict) else dataclasses.asdict(cfg)
    d = LEGACY_MODEL_DEFAULTS | d
    return ModelConfig(**{k: d[k] for k in MODEL_FIELDS if k in d})
