"""What the app loads and caches: the model, per-molecule traces, the reference set, ChEBI-20.

* The model loads once per server process (``st.cache_resource``), from ``$HSANET_CHECKPOINT``, else
  the embedded default ``assets/hsanet-default``; when neither exists an *untrained* HSA-Net runs and
  every view says so.
* Traces are cached by (model, canonical SMILES, decoding options) with ``st.cache_data``: each
  session gets its own unpickled copy, so nothing one session does reaches another.
* Every analysis runs under a time budget (``$HSANET_TIME_BUDGET_S``, default 120 s). When it is
  exceeded the request returns with a clear message while the work finishes in the background; the
  next request for the same molecule picks the result up instead of starting again.

Nothing here computes model outputs or metrics: it calls ``HSANet.analyze`` and hsanet's APIs.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, NamedTuple

import streamlit as st

from hsanet import paths
from hsanet.config import ABLATION_ORDER
from hsanet.inference import batch, variants
from hsanet.inference.batch import BudgetExceeded
from hsanet.inference.trace import Trace

CHECKPOINT_ENV = "HSANET_CHECKPOINT"
BUDGET_ENV = "HSANET_TIME_BUDGET_S"
BATCH_BUDGET_ENV = "HSANET_BATCH_BUDGET_S"
DEFAULT_BUDGET_S = 120.0
DEFAULT_BATCH_BUDGET_S = 1800.0
VARIANTS = ABLATION_ORDER
UNTRAINED_NOTICE = ("No trained default model yet: `assets/hsanet-default` is missing, so the app runs an "
                    "**untrained** HSA-Net. Its routing, tokens, properties and captions are not meaningful; "
                    "the views still show what the model computes.")


def _env_seconds(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name, "") or default)
    except ValueError:
        return default
    return value if value > 0 else default


def time_budget_s() -> float:
    return _env_seconds(BUDGET_ENV, DEFAULT_BUDGET_S)


def batch_budget_s() -> float:
    return _env_seconds(BATCH_BUDGET_ENV, DEFAULT_BATCH_BUDGET_S)


# --------------------------------------------------------------------------------------- model
class ModelKey(NamedTuple):
    """Identifies loaded weights: the folder (None = untrained) and its weights' modification time,
    so a checkpoint that appears or is retrained while the server runs is picked up."""

    folder: str | None
    stamp: int = 0


@dataclass
class ModelInfo:
    key: ModelKey
    label: str                       # e.g. "assets/hsanet-default" or "untrained (no checkpoint)"
    trained: bool
    notice: str | None               # shown above everything when set (missing default, load error)
    meta: dict = field(default_factory=dict)
    variant: str = "full"
    device: str = "cpu"
    num_levels: int = 0
    num_experts: int = 0
    max_atoms: int = 200
    max_caption_tokens: int = 128
    has_decoder: bool = False
    property_tasks: dict = field(default_factory=dict)
    rerank_consensus: float = 0.0    # weight of the neighbours' consensus in the caption reranking


def _stamp(folder: str | Path) -> int:
    try:
        return (Path(folder) / "model.safetensors").stat().st_mtime_ns
    except OSError:
        return 0


def _short(folder: str | Path) -> str:
    p = Path(folder).resolve()
    try:
        return str(p.relative_to(paths.REPO_ROOT))
    except ValueError:
        return str(p)


def default_key() -> tuple[ModelKey, str | None]:
    """The checkpoint the app uses, and a notice to show when it is not the trained default."""
    env = os.environ.get(CHECKPOINT_ENV, "").strip()
    if env:
        return ModelKey(env, _stamp(env)), None
    if paths.DEFAULT_CHECKPOINT.is_dir():
        folder = str(paths.DEFAULT_CHECKPOINT)
        return ModelKey(folder, _stamp(folder)), None
    return ModelKey(None), UNTRAINED_NOTICE


@st.cache_resource(show_spinner="Loading HSA-Net (once per server process)…", max_entries=8)
def _load(key: ModelKey):
    """(model, error message or None). A folder that cannot be loaded falls back to an untrained
    model so that the app keeps running; the error is shown. The caption decoder is built on the
    first caption (``defer_decoder``), so the first page does not wait for ``transformers``."""
    import torch

    from hsanet import HSANet

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if key.folder is None:
        return HSANet().eval().to(device), None
    try:
        return HSANet.from_pretrained(key.folder, device=device, defer_decoder=True), None
    except Exception as exc:   # CheckpointError, ConfigError, OSError, safetensors errors
        msg = (f"Could not load the checkpoint `{key.folder}`: {exc}. Running an **untrained** HSA-Net "
               "instead; its outputs are not meaningful.")
        return HSANet().eval().to(device), msg


def model_info(key: ModelKey, notice: str | None = None):
    """(model, ModelInfo) for ``key``."""
    model, error = _load(key)
    cfg = model.config
    trained = bool(model.meta.get("trained")) and error is None
    if key.folder is None or error:
        label = "untrained HSA-Net (no checkpoint)"
    else:
        label = _short(key.folder)
    device = str(model.device)
    if model.device.type == "cuda":
        import torch

        device = f"cuda ({torch.cuda.get_device_name(model.device)})"
    info = ModelInfo(key=key, label=label, trained=trained, notice=error or notice, meta=dict(model.meta),
                     variant=cfg.variant, device=device, num_levels=cfg.num_levels,
                     num_experts=cfg.num_experts if cfg.variant != "nosaf" else 0, max_atoms=cfg.max_atoms,
                     max_caption_tokens=cfg.max_caption_tokens, has_decoder=model.has_decoder,
                     property_tasks=dict(cfg.property_tasks),
                     rerank_consensus=float(cfg.rerank_consensus) if cfg.rerank else 0.0)
    if notice is None and error is None and not trained:
        info.notice = (f"The checkpoint `{label}` is marked **untrained** (metadata.json has no "
                       "`\"trained\": true`): its routing, tokens and captions are not meaningful.")
    return model, info


def get_model():
    """(model, ModelInfo) of the app's checkpoint (``$HSANET_CHECKPOINT`` or the embedded default)."""
    key, notice = default_key()
    return model_info(key, notice)


# --------------------------------------------------------------------------------------- traces
def run_with_budget(key: Any, fn: Callable[[], Any], budget_s: float) -> Any:
    """:func:`hsanet.inference.batch.run_with_budget`, with the app's explanation when it runs over.

    Raises
    ------
    BudgetExceeded
        when the job is still running after ``budget_s`` seconds (it keeps running).
    """
    try:
        return batch.run_with_budget(key, fn, budget_s)
    except BudgetExceeded as exc:
        exc.args = (f"HSA-Net did not finish within this request's time budget of {budget_s:.0f} s "
                    f"(set {BUDGET_ENV} to change it). The analysis keeps running on the server: press "
                    "**Check again** in a moment to see it, or choose greedy decoding, fewer caption tokens or a "
                    "smaller molecule.",)
        raise


_DONE: dict = {}                  # job keys whose trace is in _trace's cache (an LRU of its size)


def _job(key: ModelKey, smiles: str, num_beams: int, max_new_tokens: int | None, routing: str | None,
         caption: bool):
    """(job key, the analysis to run): the one definition of a trace job, shared by the cached call
    and the prefetch."""
    model, _ = _load(key)
    return (("trace", key, smiles, num_beams, max_new_tokens, routing, caption),
            lambda: model.analyze(smiles, caption=caption, num_beams=num_beams, max_new_tokens=max_new_tokens,
                                  routing=routing))


@st.cache_data(max_entries=512, show_spinner="Running HSA-Net on this molecule…")
def _trace(key: ModelKey, smiles: str, num_beams: int, max_new_tokens: int | None, routing: str | None,
           caption: bool, _budget_s: float) -> Trace:
    job, fn = _job(key, smiles, num_beams, max_new_tokens, routing, caption)
    out = run_with_budget(job, fn, _budget_s)
    _DONE[job] = True
    while len(_DONE) > 512:
        _DONE.pop(next(iter(_DONE)))
    return out


def get_trace(key: ModelKey, smiles: str, num_beams: int = 1, max_new_tokens: int | None = None,
              routing: str | None = None, caption: bool = True) -> Trace:
    """The Trace of a canonical SMILES (cached). Raises MoleculeError or BudgetExceeded."""
    return _trace(key, smiles, int(num_beams), max_new_tokens, routing, caption, time_budget_s())


def prefetch_trace(key: ModelKey, smiles: str, num_beams: int = 1, max_new_tokens: int | None = None) -> None:
    """Start the caption pass in the worker pool now, without waiting: the page renders its other
    views meanwhile, and ``get_trace(..., caption=True)`` later joins the same running job. Nothing
    happens when that trace is already cached."""
    job, fn = _job(key, smiles, int(num_beams), max_new_tokens, None, True)
    if job in _DONE:
        return
    try:
        batch.run_with_budget(job, fn, 0.0)
    except BudgetExceeded:
        pass                                # running: exactly what was asked


# --------------------------------------------------------------------------------------- ablations
@dataclass
class VariantResult:
    variant: str
    label: str                       # where the numbers come from
    trace: Trace | None = None
    trained: bool = False
    message: str | None = None       # why there is no trace, or a warning


def model_column(default: ModelKey, smiles: str, num_beams: int, max_new_tokens: int | None) -> VariantResult:
    """The compare view's first column: the app's own model, named by its checkpoint."""
    name = f"`{_short(default.folder)}`" if default.folder else "an untrained HSA-Net (no checkpoint)"
    try:
        tr = get_trace(default, smiles, num_beams, max_new_tokens)
    except BudgetExceeded as exc:
        return VariantResult("model", "time budget exceeded", message=str(exc))
    label = f"the app's model, {name} (variant {tr.variant})" + ("" if tr.trained else " — **untrained**")
    return VariantResult("model", label, tr, tr.trained)


def ablation_folder(variant: str) -> Path:
    return variants.ablation_folder(variant)


def variant_trace(variant: str, default: ModelKey, smiles: str, num_beams: int,
                  max_new_tokens: int | None) -> VariantResult:
    """One column of the ablation compare view; which model it comes from is
    :func:`hsanet.inference.variants.variant_plan`'s choice."""
    plan = variants.variant_plan(variant)
    try:
        if plan.source == "checkpoint":
            key = ModelKey(str(plan.checkpoint), _stamp(plan.checkpoint))
            _, info = model_info(key)
            tr = get_trace(key, smiles, num_beams, max_new_tokens)
            label = f"ablation checkpoint `{_short(plan.checkpoint)}` (not the app's model)"
            if not tr.trained:
                label += " — **untrained**"
            return VariantResult(variant, label, tr, tr.trained, info.notice if info.notice else None)
        if plan.source == "model":
            tr = get_trace(default, smiles, num_beams, max_new_tokens)
            label = "the app's model" + ("" if tr.trained else " — **untrained**")
            return VariantResult(variant, label, tr, tr.trained)
        if plan.source == "routing":
            tr = get_trace(default, smiles, num_beams, max_new_tokens, routing=plan.routing)
            label = "routing forced on the full model's weights — no ablation checkpoint"
            if not tr.trained:
                label += " (and that model is **untrained**)"
            return VariantResult(variant, label, tr, tr.trained)
        return VariantResult(variant, "no checkpoint available",
                             message=f"No no-SAF checkpoint is available (`{_short(plan.checkpoint)}` is missing). "
                                     "This variant replaces SAF by a plain MLP, which needs its own trained "
                                     "weights, so it cannot be emulated on the full model.")
    except BudgetExceeded as exc:
        return VariantResult(variant, "time budget exceeded", message=str(exc))


# --------------------------------------------------------------------------------------- reference set
def _dir_stamp(folder: Path) -> int:
    try:
        return max((p.stat().st_mtime_ns for p in folder.iterdir()), default=folder.stat().st_mtime_ns)
    except OSError:
        return 0


@st.cache_resource(show_spinner="Loading the reference set…", max_entries=2)
def _reference(folder: str, stamp: int):
    try:
        from hsanet.reference.store import ReferenceSet
    except ImportError as exc:
        return None, f"this build has no `hsanet.reference.store` ({exc})"
    if not Path(folder).is_dir():
        return None, ("`assets/reference` is missing (build it with "
                      "`./run hsanet reference build`)")
    try:
        return ReferenceSet.load(folder), None
    except Exception as exc:   # a half-built or incompatible folder must not stop the app
        return None, f"`{_short(folder)}` could not be loaded ({exc})"


def reference_set():
    """(ReferenceSet or None, message when None)."""
    folder = paths.REFERENCE_DIR
    if not folder.is_dir():
        return None, ("`assets/reference` is missing (build it with "
                      "`./run hsanet reference build`)")
    return _reference(str(folder), _dir_stamp(folder))


STATIC_DIR = Path(__file__).resolve().parent / "static"     # served at app/static/ (enableStaticServing)
STRUCTURES = "structures"


@st.cache_resource(max_entries=2)
def structure_images(folder: str, stamp: int) -> str:
    """URL folder of the reference molecules' pictures (``<row>.png``), drawn by RDKit once per
    reference set into app/static/ (a cache, not in git) by a background thread: the map's hover
    shows them as they appear (a few seconds for a few thousand molecules)."""
    import threading

    from app import draw

    ref, _ = _reference(folder, stamp)
    name = f"{STRUCTURES}/{stamp}"
    out = STATIC_DIR / name
    if ref is None or "smiles" not in ref.table.columns:
        return name
    smiles = [str(s) for s in ref.table["smiles"]]

    def work():
        out.mkdir(parents=True, exist_ok=True)
        for i, smi in enumerate(smiles):
            target = out / f"{i}.png"
            if target.exists():
                continue
            data = draw.png(smi)
            if data:
                tmp = target.with_suffix(".tmp")
                tmp.write_bytes(data)
                tmp.replace(target)           # a half-written picture is never served

    threading.Thread(target=work, name="hsanet-structures", daemon=True).start()
    return name


def reference_structures() -> str | None:
    """:func:`structure_images` of the current reference set (None without one)."""
    folder = paths.REFERENCE_DIR
    if not folder.is_dir():
        return None
    return structure_images(str(folder), _dir_stamp(folder))


# --------------------------------------------------------------------------------------- ChEBI-20
LOOKUP_BUDGET_S = 20.0


class StillWorking(RuntimeError):
    """A lookup (ChEBI-20 index, caption scores) is still running in the background."""


@st.cache_resource(show_spinner="Indexing ChEBI-20 descriptions (once per server process)…")
def _chebi_index(data_folder: str):
    """canonical SMILES -> (split, CID, description), or None when the shared data is absent.
    Built in the background; raises StillWorking while it is not ready (nothing is cached then)."""
    try:
        from hsanet.data.chebi import description_index

        return run_with_budget(("chebi", data_folder), lambda: description_index(data_folder), LOOKUP_BUDGET_S)
    except BudgetExceeded:
        raise StillWorking("ChEBI-20 is still being indexed (the first time only)") from None


def chebi_entry(smiles: str) -> tuple[str, str, str] | None | bool:
    """(split, CID, description) for a canonical SMILES from ChEBI-20; None when it is not in
    ChEBI-20; False when the ChEBI-20 data is not present. Raises StillWorking."""
    index = _chebi_index(str(paths.data_dir()))
    if index is None:
        return False
    return index.get(smiles)


@st.cache_data(max_entries=256, show_spinner=False)
def _scores(reference: str, prediction: str) -> dict:
    from hsanet.metrics.captions import sentence_scores

    try:
        return run_with_budget(("scores", reference, prediction), lambda: sentence_scores(reference, prediction),
                               LOOKUP_BUDGET_S)
    except BudgetExceeded:
        raise StillWorking("the scores are still being computed (METEOR loads WordNet the first time)") from None


def caption_scores(reference: str, prediction: str) -> tuple[dict | None, str | None]:
    """Sentence BLEU-4 and METEOR of one caption (hsanet.metrics.captions.sentence_scores), or None and
    why not. Raises StillWorking."""
    try:
        return _scores(reference, prediction), None
    except StillWorking:
        raise
    except Exception as exc:   # missing SciBERT vocabulary or WordNet
        return None, str(exc)
