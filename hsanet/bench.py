"""``hsanet bench``: latency, throughput and scaling of HSA-Net, printed as a table and written as JSON.

    hsanet bench [--quick] [--json FILE] [--checkpoint DIR] [--threads N] [--app | --no-app]

Every figure is the median (and 90th percentile) of ``--runs`` timed runs (default 20, ``--quick`` 3)
after warm-up runs, in this one process, on the CPU unless a section says otherwise:

* ``latency``  per-stage latency of ``HSANet.analyze`` for one molecule of about 10, 30 and 60 heavy
  atoms (paracetamol, losartan, vincristine), and a caption of exactly 64 tokens, greedy, with and
  without the KV cache (EOS is suppressed with ``min_new_tokens`` so the length is fixed);
* ``embed``    embedding throughput (no caption) at batch 1, 32 and 256 on drug-like ChEBI-20
  molecules (10-50 heavy atoms): ``HSANet.embed`` on featurized batches (the headline
  ``embed_per_s_b256``) and end to end from SMILES (RDKit parse + featurize + embed);
* ``scaling``  E_Attn and E_Mamba time per molecule on synthetic chains of 25..400 atoms (alkanes,
  real GIN level states), and the scans of hsanet.projectors.scan against the step-by-step recurrence;
* ``train``    caption-training throughput (molecules / s) of the model's config: AdamW steps of
  ``CaptionModule._loss`` on ChEBI-20 validation molecules with retrieved references;
* ``app``      cold start of the Streamlit app to the first rendered result in headless Chromium
  (Playwright), and ``map``: the time ``ReferenceSet.place`` takes to put a new molecule on the map;
* ``gpu``      when CUDA is present: the same on the GPU in float32 and bf16 autocast, and mamba-ssm's
  kernel (when importable) against the PyTorch scans.

Benchmarks are not tests: the numbers depend on the machine and its load. The JSON holds the
headline keys (``analysis_ms_median``, ``caption_ms_median``, ``embed_per_s_b256``,
``mamba_400_over_50``, ``attn_400_over_50``, ``train_mol_per_s``, ``device``), the targets and
every row of the table.
"""
from __future__ import annotations

import copy
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

# One molecule per size class (heavy atoms in brackets); the 30-atom one is the headline molecule.
MOLECULES = {
    "10": ("paracetamol", "CC(=O)Nc1ccc(O)cc1"),                                            # 11
    "30": ("losartan", "CCCCc1nc(Cl)c(CO)n1Cc1ccc(-c2ccccc2-c2nn[nH]n2)cc1"),                # 30
    "60": ("vincristine",                                                                    # 60
           "CC[C@@]1(O)C[C@@H]2CN(CCc3c([nH]c4ccccc34)[C@@](C(=O)OC)(c3cc4c(cc3OC)N(C=O)[C@H]3[C@@](O)"
           "(C(=O)OC)[C@H](OC(C)=O)[C@]5(CC)C=CCN6CC[C@]43[C@@H]65)C2)C1"),
}
HEADLINE = "30"
# used when ChEBI-20 is not available (embedding pool, training molecules, tokenizer)
FALLBACK_POOL = [
    ("CC(=O)Oc1ccccc1C(=O)O", "The molecule is a member of benzoic acids and an acetate ester."),
    ("CC(C)Cc1ccc(C(C)C(=O)O)cc1", "The molecule is a monocarboxylic acid that is propionic acid substituted."),
    ("CN1C=NC2=C1C(=O)N(C(=O)N2C)C", "The molecule is a trimethylxanthine. It has a role as a stimulant."),
    ("CC(=O)Nc1ccc(O)cc1", "The molecule is a member of phenols and a member of acetamides."),
    (MOLECULES["30"][1], "The molecule is a biphenylyltetrazole. It has a role as an antihypertensive agent."),
    ("O=C(O)c1ccccc1O", "The molecule is a monohydroxybenzoic acid. It has a role as a plant metabolite."),
    ("CCN(CC)CCNC(=O)c1ccc(N)cc1", "The molecule is a benzamide. It has a role as an anti-arrhythmia drug."),
    ("COc1ccc2[nH]cc(CCNC(C)=O)c2c1", "The molecule is a member of acetamides and a member of tryptamines."),
]
SCALING_SIZES = (25, 50, 100, 200, 400)
EMBED_BATCHES = (1, 32, 256)
CAPTION_TOKENS = 64
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# the molecule view's summary line appears only once a trace is rendered: "15 heavy atoms · 3 BRICS fragments"
APP_RESULT_JS = r"() => /\d+\s*heavy atoms\s*·\s*\d+\s*BRICS/.test(document.body.innerText)"
# the caption section's label appears once the second pass (with the caption) is rendered
APP_CAPTION_JS = r"() => /Generated caption \(/.test(document.body.innerText)"

# target per headline key: (comparison, value, what it means)
TARGETS = {
    "analysis_ms_median": ("<=", 100.0, "analysis of a ~30-atom molecule without caption, ms"),
    "caption_ms_median": ("<=", 1000.0, "64-token greedy caption with KV cache, ms"),
    "embed_per_s_b256": (">=", 500.0, "embedding throughput at batch 256, molecules/s"),
    "mamba_400_over_50": ("<=", 10.0, "E_Mamba time at 400 atoms / at 50 atoms"),
    "app_cold_start_s": ("<=", 15.0, "app cold start to first rendered result, s"),
    "map_place_ms_median": ("<=", 500.0, "placing a new molecule on the map, ms"),
}


# ------------------------------------------------------------------------------------- helpers
@dataclass
class Row:
    section: str
    name: str
    median: float
    p90: float | None
    unit: str
    n: int
    target: str = ""
    met: bool | None = None
    note: str = ""


def _stats(values: list[float]) -> tuple[float, float]:
    import numpy as np

    a = np.asarray(values, dtype=float)
    return float(np.median(a)), float(np.percentile(a, 90))


def _timeit(fn, runs: int, warmup: int, sync=None) -> list[float]:
    """Seconds per call of ``fn`` over ``runs`` calls after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(runs):
        if sync:
            sync()
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        out.append(time.perf_counter() - t0)
    return out


def _met(key: str, value) -> tuple[str, bool | None]:
    if key not in TARGETS or value is None:
        return "", None
    op, target, _ = TARGETS[key]
    return f"{op} {target:g}", (value <= target if op == "<=" else value >= target)


class Report:
    """Collects the table rows and the JSON result."""

    def __init__(self, quick: bool) -> None:
        self.rows: list[Row] = []
        self.result: dict = {"quick": quick, "sections": {}, "skipped": {}, "notes": []}

    def add(self, section: str, name: str, seconds_or_value: list[float] | float, unit: str = "ms",
            key: str | None = None, note: str = "", scale: float = 1000.0) -> float:
        """A row from timings in seconds (scaled to ``unit``) or from one value already in ``unit``."""
        if isinstance(seconds_or_value, list):
            med, p90 = _stats([v * scale for v in seconds_or_value])
            n = len(seconds_or_value)
        else:
            med, p90, n = float(seconds_or_value), None, 1
        target, met = _met(key, med) if key else ("", None)
        self.rows.append(Row(section, name, med, p90, unit, n, target, met, note))
        return med

    def skip(self, section: str, why: str) -> None:
        self.result["skipped"][section] = why
        print(f"[bench] {section}: skipped ({why})", file=sys.stderr, flush=True)

    def table(self) -> str:
        lines = [f"{'section':<9} {'measurement':<56} {'median':>10} {'p90':>10}  {'unit':<7} {'n':>3}  "
                 f"{'target':<9} met"]
        for r in self.rows:
            p90 = f"{r.p90:10.3g}" if r.p90 is not None else " " * 10
            met = "" if r.met is None else ("yes" if r.met else "NO")
            lines.append(f"{r.section:<9} {r.name[:56]:<56} {r.median:10.4g} {p90}  {r.unit:<7} {r.n:>3}  "
                         f"{r.target:<9} {met}" + (f"  ({r.note})" if r.note else ""))
        return "\n".join(lines)


def _log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------- model
def _chebi(split: str = "validation", data_dir=None):
    """(smiles, captions) of a ChEBI-20 split, or None when the data is missing."""
    try:
        from .data.chebi import load_chebi

        s = load_chebi(split, data_dir)
        return list(s.smiles), list(s.descriptions)
    except (FileNotFoundError, OSError):
        return None


def load_model(checkpoint: str | None, device: str, data_dir=None):
    """(model, label): the checkpoint, else the embedded default, else an untrained HSA-Net whose
    tokenizer is trained here on a few hundred ChEBI-20 captions (or a built-in handful)."""
    import torch

    from .model import HSANet
    from .paths import DEFAULT_CHECKPOINT

    if checkpoint or DEFAULT_CHECKPOINT.is_dir():
        folder = Path(checkpoint) if checkpoint else DEFAULT_CHECKPOINT
        model = HSANet.from_pretrained(folder, device=device)
        state = "trained" if model.meta.get("trained") else "untrained"
        try:
            shown = str(folder.resolve().relative_to(Path.cwd().resolve()))
        except ValueError:
            shown = str(folder)
        return model.eval(), f"{shown} ({state})"
    from .lm import TextTokenizer

    data = _chebi("validation", data_dir)
    if data:
        texts = data[0][:500] + data[1][:500]
        src = "500 ChEBI-20 validation pairs"
    else:
        texts = [s for s, _ in FALLBACK_POOL] + [c for _, c in FALLBACK_POOL]
        src = "a built-in handful of captions"
    tok = TextTokenizer.train(texts * (1 if data else 3), vocab_size=6000, min_frequency=2 if data else 1)
    torch.manual_seed(0)
    model = HSANet(tokenizer=tok).to(device).eval()
    return model, f"untrained default config (no checkpoint; tokenizer trained on the fly on {src})"


def _drug_like_pool(n: int, data_dir=None) -> list[str]:
    """``n`` drug-like SMILES: ChEBI-20 test molecules with 10-50 heavy atoms (cycled if needed)."""
    from .chem import MoleculeError, parse

    data = _chebi("test", data_dir)
    cands = data[0] if data else [s for s, _ in FALLBACK_POOL]
    out = []
    for s in cands:
        try:
            m = parse(s)
        except MoleculeError:
            continue
        if 10 <= m.num_atoms <= 50 or not data:
            out.append(s)
        if len(out) >= n:
            break
    while len(out) < n:
        out += out[: n - len(out)]
    return out


# ------------------------------------------------------------------------------------- sections
def bench_latency(model, rep: Report, runs: int, warmup: int, quick: bool, sync=None, autocast=None,
                  section: str = "latency", sizes=None) -> dict:
    """Per-stage latency of analyze() and of a 64-token greedy caption, per molecule size."""
    import torch

    from .chem import featurize, parse

    ctx = autocast or nullcontext
    out = {}
    sizes = sizes or list(MOLECULES)
    for size in sizes:
        name, smi = MOLECULES[size]
        mol = parse(smi, model.config.max_atoms)
        label = f"{name} ({mol.num_atoms} atoms)"
        stages, totals = [], []

        def one():
            with ctx():
                t0 = time.perf_counter()
                tr = model.analyze(smi, caption=False)
                if sync:
                    sync()
                totals.append(time.perf_counter() - t0)
                stages.append(tr.timings_ms)

        for _ in range(warmup):
            one()
        stages.clear()
        totals.clear()
        for _ in range(runs):
            one()
        res = {"smiles": smi, "atoms": mol.num_atoms, "stages_ms": {}}
        for st in stages[0]:
            if st == "caption":
                continue
            vals = [s[st] / 1000.0 for s in stages]
            res["stages_ms"][st] = rep.add(section, f"{label}: {st}", vals)
        key = "analysis_ms_median" if size == HEADLINE else None
        res["analysis_ms"] = rep.add(section, f"{label}: analysis total, no caption", totals, key=key,
                                     note="wall time of analyze(caption=False)")
        if model.decoder is not None and (not quick or size == HEADLINE):
            with torch.no_grad(), ctx():
                fused = model.encode(featurize(mol))["fused"]

            dec = model.decoder
            copy_head = getattr(dec, "copy", None)
            with ctx():
                res["caption_tokens"] = _caption_length(model, fused, mol.smiles)
            key = "caption_ms_median" if size == HEADLINE else None
            nc_runs = runs if not quick else 1
            if copy_head is not None:
                # the model's own decoding: pointer-generator greedy loop over the KV cache (no cache-less mode)
                res["caption_ms_kv"] = rep.add(
                    section, f"{label}: caption 64 tok greedy (copy head), KV cache",
                    _timeit(_caption_call(model, mol, fused, ctx, True), runs, warmup, sync), key=key,
                    note=_decoding_note(model))
                res["caption_ms_lm_kv"] = rep.add(
                    section, f"{label}: caption 64 tok greedy, plain LM, KV cache",
                    _timeit(_caption_call(model, mol, fused, ctx, True, plain=True), runs, warmup, sync),
                    note="transformers generate(), copy head off")
                res["caption_ms_nocache"] = rep.add(
                    section, f"{label}: caption 64 tok greedy, plain LM, no cache",
                    _timeit(_caption_call(model, mol, fused, ctx, False, plain=True), nc_runs, min(warmup, 1), sync),
                    note="transformers generate(use_cache=False), copy head off")
            else:
                res["caption_ms_kv"] = rep.add(section, f"{label}: caption 64 tok greedy, KV cache",
                                               _timeit(_caption_call(model, mol, fused, ctx, True), runs, warmup, sync),
                                               key=key, note=_decoding_note(model))
                res["caption_ms_nocache"] = rep.add(
                    section, f"{label}: caption 64 tok greedy, no cache",
                    _timeit(_caption_call(model, mol, fused, ctx, False), nc_runs, min(warmup, 1), sync))
        out[size] = res
    return out


def _decoding_note(model) -> str:
    cfg = model.config
    parts = [f"no_repeat_ngram {getattr(cfg, 'no_repeat_ngram_size', 0) or 'off'}"]
    if getattr(cfg, "rerank", False) and cfg.retrieval_k:
        parts.append("+ rerank of the neighbours' captions")
    return "as analyze: " + ", ".join(parts)


def _caption_call(model, mol, fused, ctx, use_cache: bool, plain: bool = False):
    """The caption stage of ``analyze`` for one molecule, 64 tokens exactly (EOS suppressed):
    neighbour look-up, prompt, greedy decoding and, when configured, reranking. ``plain`` switches
    the copy head off, so transformers' generate() decodes (the only path with a cache-less mode)."""
    dec = model.decoder

    def go():
        with ctx():
            refs = model.references([mol.smiles])
            prompts = [dec.prompt_ids(mol.smiles, [n.caption for n in refs[0]])]
            saved = getattr(dec, "copy", None)
            if plain and saved is not None:
                dec.copy = None
            try:
                caps = dec.generate(fused, prompts, 1, CAPTION_TOKENS, use_cache=use_cache,
                                    min_new_tokens=CAPTION_TOKENS)
            finally:
                if plain and saved is not None:
                    dec.copy = saved
            if not plain and getattr(model.config, "rerank", False) and refs[0] and hasattr(model, "rerank"):
                model.rerank(fused, prompts, [[caps[0]] + [n.caption for n in refs[0]]])
    return go


def _caption_length(model, fused, smiles: str) -> int:
    """Number of tokens the benchmark's caption call generates (must be 64; checked on the plain LM path)."""
    import torch

    dec = model.decoder
    refs = model.references([smiles])
    prompts = [dec.prompt_ids(smiles, [n.caption for n in refs[0]])]
    with torch.no_grad():
        embeds, mask, _ = dec._embed(fused, prompts, left_pad=True)
        ids = dec.lm.generate(inputs_embeds=embeds, attention_mask=mask, max_new_tokens=CAPTION_TOKENS,
                              min_new_tokens=CAPTION_TOKENS, do_sample=False, num_beams=1,
                              eos_token_id=dec.tokenizer.eos_id, pad_token_id=dec.tokenizer.pad_id)
    return int(ids.shape[1])


def bench_embed(model, rep: Report, runs: int, warmup: int, quick: bool, data_dir=None, sync=None,
                autocast=None, section: str = "embed", batches=EMBED_BATCHES) -> dict:
    """Molecules per second, SMILES to embedding, and the model alone on featurized batches."""
    import torch

    from .chem import featurize, parse

    ctx = autocast or nullcontext
    pool = _drug_like_pool(max(batches) * 2, data_dir)
    out = {"pool": "ChEBI-20 test molecules with 10-50 heavy atoms" if _chebi("test", data_dir) else "built-in"}
    for b in batches:
        n_runs = max(runs, 50) if b == 1 and not quick else runs
        batches_smi = [pool[(i * b) % len(pool):][:b] for i in range(n_runs + warmup)]
        batches_smi = [x if len(x) == b else (x + pool)[:b] for x in batches_smi]
        it = iter(batches_smi)

        def end_to_end():
            smi = next(it)
            with torch.no_grad(), ctx():
                model.embed(featurize([parse(s, model.config.max_atoms) for s in smi]))

        per = _timeit(end_to_end, n_runs, warmup, sync)
        graph = featurize([parse(s, model.config.max_atoms) for s in batches_smi[0]])

        def model_only():
            with torch.no_grad(), ctx():
                model.embed(graph)

        per_m = _timeit(model_only, n_runs, warmup, sync)
        key = "embed_per_s_b256" if b == 256 else None
        rate_m = b / _stats(per_m)[0]
        target, met = _met(key, rate_m) if key else ("", None)
        rep.rows.append(Row(section, f"embedding (embed), batch {b}", rate_m, b / _stats(per_m)[1], "mol/s",
                            len(per_m), target, met, "featurized batch; p90 column = rate at the p90 time"))
        rate = b / _stats(per)[0]
        rep.rows.append(Row(section, f"SMILES -> embedding, batch {b}", rate, b / _stats(per)[1], "mol/s",
                            len(per), note="parse + featurize + embed"))
        out[f"b{b}"] = {"mol_per_s": rate_m, "e2e_mol_per_s": rate, "batch_ms": _stats(per_m)[0] * 1000.0,
                        "e2e_batch_ms": _stats(per)[0] * 1000.0}
    return out


def _chain_inputs(model, n: int):
    """GIN level states and serialization of the alkane chain C_n (real features of a synthetic molecule)."""
    import torch

    from .chem import featurize, parse
    from .hap import serialize_batch

    batch = featurize(parse("C" * n, max_atoms=max(1000, n))).to(model.device)
    with torch.no_grad():
        levels = model.encoder(batch.x, batch.edge_index, batch.edge_attr)
    ser = serialize_batch(batch)
    return batch, levels, ser


def bench_scaling(model, rep: Report, runs: int, warmup: int, sync=None, autocast=None, section: str = "scaling",
                  sizes=SCALING_SIZES, scan_backward: bool = True) -> dict:
    """E_Attn and E_Mamba per molecule vs atoms; the scans vs the step-by-step recurrence."""
    import torch
    import torch.nn.functional as F
    from torch_geometric.utils import to_dense_batch

    from .projectors.scan import selective_scan_parallel, selective_scan_readout, selective_scan_ref

    ctx = autocast or nullcontext
    attn, mamba = model.hap.attn[-1], model.hap.mamba[-1]          # the projectors of the last level
    out = {"attn_ms": {}, "mamba_ms": {}, "encode_ms": {}, "scan": {}}
    for n in sizes:
        batch, levels, ser = _chain_inputs(model, n)
        h = levels[-1]
        dense, mask = to_dense_batch(h, batch.batch)
        seq = h[ser.index] * ser.mask.unsqueeze(-1).to(h.dtype)

        def run_attn():
            with torch.no_grad(), ctx():
                attn(dense, mask)

        def run_mamba():
            with torch.no_grad(), ctx():
                mamba(seq, ser.dist, ser.mask)

        def run_encode():
            with torch.no_grad(), ctx():
                model.encode(batch)

        out["attn_ms"][n] = rep.add(section, f"E_Attn, chain of {n} atoms", _timeit(run_attn, runs, warmup, sync))
        out["mamba_ms"][n] = rep.add(section, f"E_Mamba, chain of {n} atoms", _timeit(run_mamba, runs, warmup, sync))
        out["encode_ms"][n] = rep.add(section, f"whole encode(), chain of {n} atoms",
                                      _timeit(run_encode, max(3, runs // 2), min(warmup, 1), sync))
    lo, hi = 50, max(sizes)
    if lo in out["mamba_ms"] and hi != lo:
        out["mamba_400_over_50"] = out["mamba_ms"][hi] / out["mamba_ms"][lo]
        out["attn_400_over_50"] = out["attn_ms"][hi] / out["attn_ms"][lo]
        rep.add(section, f"E_Mamba time ratio {hi}/{lo} atoms", out["mamba_400_over_50"], unit="x",
                key="mamba_400_over_50", note=f"{hi // lo}x the atoms")
        rep.add(section, f"E_Attn time ratio {hi}/{lo} atoms", out["attn_400_over_50"], unit="x")

    # the scans alone, shapes of E_Mamba: batch 1, D = expand * proj_dim channels, N = d_state
    cfg = model.config
    dim, state = cfg.expand * cfg.proj_dim, cfg.d_state
    dev = model.device
    for n in sizes:
        g = torch.Generator().manual_seed(n)
        r = lambda *s: torch.randn(*s, generator=g).to(dev)  # noqa: E731
        args = [r(1, dim, n), F.softplus(r(1, dim, n) - 2.0), -torch.exp(r(dim, state) * 0.5),
                r(1, state, n), r(1, state, n), r(dim), r(1, dim, n)]
        res = {}
        fns = {"ref": selective_scan_ref, "parallel": selective_scan_parallel,
               "readout": lambda *a: selective_scan_readout(*a, num_out=cfg.num_queries)}
        with torch.no_grad():
            y_ref = selective_scan_ref(*args)
            res["max_abs_diff_parallel"] = float((selective_scan_parallel(*args) - y_ref).abs().max())
            res["max_abs_diff_readout"] = float(
                (selective_scan_readout(*args, num_out=cfg.num_queries) - y_ref[..., -cfg.num_queries:]).abs().max())
        for name, fn in fns.items():
            def fwd(fn=fn):
                with torch.no_grad():
                    fn(*args)

            res[f"{name}_fwd_ms"] = rep.add(section, f"scan {name}, L={n}, forward", _timeit(fwd, runs, warmup, sync))
            if scan_backward:
                leaves = [a.clone().requires_grad_(True) for a in args]

                def fwd_bwd(fn=fn, leaves=leaves):
                    fn(*leaves).sum().backward()

                res[f"{name}_fwd_bwd_ms"] = rep.add(section, f"scan {name}, L={n}, forward+backward",
                                                    _timeit(fwd_bwd, runs, warmup, sync))
        out["scan"][n] = res
    return out


def measure_peak(dtype, n: int = 2048, reps: int = 5, device: str = "cpu", sync=None) -> float:
    """This machine's matmul peak now: TFLOP/s of an n x n x n product in ``dtype`` (best of ``reps``)."""
    import torch

    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    best = float("inf")
    for _ in range(reps + 1):
        if sync:
            sync()
        t0 = time.perf_counter()
        a @ b
        if sync:
            sync()
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best / 1e12


def _autocast(device: str, precision: str):
    import torch

    if precision.startswith("bf16"):
        return torch.autocast(device, torch.bfloat16)
    if precision.startswith("16"):
        return torch.autocast(device, torch.float16)
    return contextlib.nullcontext()


def _step_flops(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def _caption_train_rate(net, rep: Report, section: str, label: str, bs: int, steps: int, warmup: int,
                        smiles, caps, precision: str, peak: float, sync=None) -> dict:
    """Caption-training steps as ``hsanet train`` runs them: collate, forward under the precision's
    autocast, backward, clipping, AdamW; FLOPs of the same batches counted by torch's FlopCounterMode."""
    import torch

    from .retrieval import FingerprintIndex
    from .training.caption import prepare_dataset
    from .training.data import LengthGroupedSampler, collate
    from .training.module import CaptionModule

    device = net.device.type
    # as `hsanet train` prepares its training set (its own retrieval pool, leave-one-out), uncached
    ds, _ = prepare_dataset(net, {"no_cache": True}, Path("."), {}, "fit", smiles, caps,
                            lambda s=None, c=None: FingerprintIndex.build(s, c), exclude_self=True)
    order = list(LengthGroupedSampler(ds.lengths(), bs, seed=0))
    # full batches only, unless the data has fewer than bs molecules (the built-in fallback pool):
    # then its one short batch, or the repetition below never ends
    order = [o for o in order if len(o) == bs] or order
    if not order:
        rep.skip(section, f"{label}: no training molecules")
        return {}
    while len(order) < steps + warmup:
        order += order
    module = CaptionModule(net)
    opt = module.configure_optimizers()["optimizer"]
    net.train()
    todo = iter(order[: steps + warmup])
    done: list[list[int]] = []

    def loss_of(idx):
        b = collate([ds[i] for i in idx])
        b["batch"] = b["batch"].to(net.device)
        with _autocast(device, precision):
            lm, bal = module._loss(b, epoch=0)
        return lm + bal

    def step():
        idx = next(todo)
        loss = loss_of(idx)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        done.append(idx)

    per = _timeit(step, steps, warmup, sync)
    timed = done[warmup:]
    flops = []
    for idx in timed:                       # the same batches again, counted (not timed)
        flops.append(_step_flops(lambda: loss_of(idx).backward()))
        opt.zero_grad(set_to_none=True)
    n_mols = sum(len(i) for i in timed)
    g = net.config.num_levels * net.config.num_queries + net.config.num_motif_queries
    n_tok = sum(len(ds[i].prompt) + len(ds[i].target) + g for idx in timed for i in idx)
    seconds = sum(per)
    tflops = sum(flops) / seconds / 1e12
    out = {"mol_per_s": n_mols / seconds, "tokens_per_s": n_tok / seconds, "batch_size": bs, "steps": len(per),
           "step_ms_median": _stats(per)[0] * 1000.0, "flops_per_step": sum(flops) / len(flops),
           "tflops": tflops, "mfu": tflops / peak, "precision": precision,
           "parameters_M": round(sum(p.numel() for p in net.parameters()) / 1e6, 2)}
    rep.rows.append(Row(section, f"{label}, batch {bs}", out["mol_per_s"], None, "mol/s", len(per),
                        note=f"{precision}; {out['tokens_per_s']:.0f} tokens/s; median step "
                             f"{out['step_ms_median']:.0f} ms; {out['flops_per_step'] / 1e9:.1f} GFLOP/step; "
                             f"{tflops:.3f} TFLOP/s = {100 * out['mfu']:.1f} % of the {precision} peak"))
    return out


def bench_train(model, rep: Report, steps: int, warmup: int, quick: bool, data_dir=None,
                section: str = "train", precision: str | None = None, sync=None) -> dict:
    """Training throughput and utilisation: the default caption recipe (the embedded model's:
    copy head, 2 retrieved captions, batch 16) and the property recipe (frozen-encoder read-out of
    the pooled GIN levels, batch 128), with FLOPs per step, achieved FLOP/s, this machine's
    matmul peaks measured in the same run (a 2048^3 product in float32 and in bf16) and the
    ratio (MFU) against the peak of the precision used. Not in ``--quick``: the same caption step
    on a wide model (LM width 512, 8 layers) for the utilisation a wider model reaches."""
    import torch

    from .training.caption import default_precision

    if model.decoder is None:
        rep.skip(section, "the model has no caption decoder")
        return {}
    device = model.device.type
    precision = precision or default_precision("gpu" if device == "cuda" else "cpu")
    peak32 = measure_peak(torch.float32, device=device, sync=sync)
    peak16 = measure_peak(torch.bfloat16, device=device, sync=sync)
    peak = peak16 if precision.startswith(("bf16", "16")) else peak32
    rep.add(section, "matmul peak 2048^3, float32", peak32, "TFLOP/s")
    rep.add(section, "matmul peak 2048^3, bf16", peak16, "TFLOP/s")
    data = _chebi("validation", data_dir)
    bs = 16                                       # `hsanet train` default batch size
    if data:
        rows = max(bs * (steps + warmup) * 2, 256)
        smiles, caps = data[0][:rows], data[1][:rows]
        source = f"ChEBI-20 validation, first {len(smiles)} rows"
    else:
        smiles, caps = [s for s, _ in FALLBACK_POOL], [c for _, c in FALLBACK_POOL]
        source = "built-in molecules (ChEBI-20 not found)"
    net = copy.deepcopy(model).to(model.device)
    out = {"data": source, "peak_fp32_tflops": peak32, "peak_bf16_tflops": peak16, "precision": precision}
    out["caption"] = _caption_train_rate(net, rep, section, "caption training (default recipe)", bs, steps,
                                         warmup, smiles, caps, precision, peak, sync)
    out.update({k: out["caption"][k] for k in ("mol_per_s", "tokens_per_s", "tflops", "mfu", "step_ms_median")})
    del net
    # property recipe: the frozen encoder's read-out for the heads, as training/property.py runs it
    from .chem import featurize, parse

    pool = _drug_like_pool(128, data_dir)
    mols = [parse(s) for s in pool]
    graph = featurize(mols).to(model.device)
    model.eval()

    def readout():
        with torch.no_grad():
            enc = model.encode(graph)
            model.property_features(enc["levels"], enc["batch"].batch, enc["embedding"])

    per = _timeit(readout, steps, warmup, sync)
    # FlopCounterMode's module tracker cannot hook parameters that require grad inside no_grad
    needs = [p for p in model.parameters() if p.requires_grad]
    for p in needs:
        p.requires_grad_(False)
    try:
        flops = _step_flops(readout)
    finally:
        for p in needs:
            p.requires_grad_(True)
    tfl = flops * len(per) / sum(per) / 1e12
    prop = {"mol_per_s": len(mols) * len(per) / sum(per), "atoms_per_s": graph.num_nodes * len(per) / sum(per),
            "batch_size": len(mols), "flops_per_step": flops, "tflops": tfl, "mfu": tfl / peak32,
            "precision": "32-true"}
    out["property"] = prop
    rep.rows.append(Row(section, "property recipe: frozen read-out, batch 128", prop["mol_per_s"], None, "mol/s",
                        len(per), note=f"float32 (as training/property.py); {flops / 1e9:.1f} GFLOP/batch; "
                                       f"{tfl:.3f} TFLOP/s = {100 * prop['mfu']:.1f} % of the float32 peak"))
    if not quick and model.tokenizer is not None:
        from .config import HSANetConfig
        from .model import HSANet

        cfg = HSANetConfig.from_dict({**model.config.to_dict(), "lm_dim": 512, "lm_layers": 8, "lm_heads": 8,
                                      "property_tasks": {}})
        torch.manual_seed(0)
        wide = HSANet(cfg, model.tokenizer).to(model.device)
        out["wide"] = _caption_train_rate(wide, rep, section, "caption training, wide LM (d 512, 8 layers)", bs,
                                          max(3, steps // 4), 1, smiles, caps, precision, peak, sync)
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_app(rep: Report, runs: int, checkpoint: str | None, timeout_s: float = 180.0,
              section: str = "app") -> dict:
    """Cold start: server process start -> first trace rendered in headless Chromium, per run."""
    from .paths import REPO_ROOT

    app = REPO_ROOT / "app" / "main.py"
    if not app.exists():
        rep.skip(section, "app/main.py is missing")
        return {}
    if not Path(CHROMIUM).exists():
        rep.skip(section, f"{CHROMIUM} is missing (Debian package chromium)")
        return {}
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        rep.skip(section, "playwright is not installed")
        return {}
    import urllib.request

    env = dict(os.environ, STREAMLIT_BROWSER_GATHER_USAGE_STATS="false", PYTHONUNBUFFERED="1")
    if checkpoint:
        env["HSANET_CHECKPOINT"] = str(Path(checkpoint).resolve())
    ready, first, captioned, errors = [], [], [], []
    with sync_playwright() as pw:
        for i in range(runs):
            port = _free_port()
            profile = tempfile.mkdtemp(prefix="hsanet-bench-chromium-")
            log = tempfile.TemporaryFile()
            ctx = pw.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, headless=True,
                                                        args=CHROMIUM_FLAGS)
            page = ctx.pages[0] if ctx.pages else ctx.new_page()
            cmd = [sys.executable, "-m", "streamlit", "run", str(app), "--server.headless", "true",
                   "--server.port", str(port), "--server.address", "127.0.0.1"]
            t0 = time.perf_counter()
            proc = subprocess.Popen(cmd, cwd=str(REPO_ROOT), env=env, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            try:
                url = f"http://127.0.0.1:{port}"
                while True:
                    if proc.poll() is not None:
                        raise RuntimeError(f"streamlit exited with code {proc.returncode}")
                    if time.perf_counter() - t0 > timeout_s:
                        raise TimeoutError("the server did not answer")
                    try:
                        with urllib.request.urlopen(url + "/_stcore/health", timeout=1) as r:
                            if r.status == 200:
                                break
                    except OSError:
                        time.sleep(0.05)
                t_ready = time.perf_counter() - t0
                page.goto(url, wait_until="domcontentloaded")
                left_ms = max(1000.0, (timeout_s - (time.perf_counter() - t0)) * 1000.0)
                page.wait_for_function(APP_RESULT_JS, timeout=left_ms, polling=50)
                t_first = time.perf_counter() - t0
                left_ms = max(1000.0, (timeout_s - (time.perf_counter() - t0)) * 1000.0)
                page.wait_for_function(APP_CAPTION_JS, timeout=left_ms, polling=50)
                t_caption = time.perf_counter() - t0
                ready.append(t_ready)
                first.append(t_first)
                captioned.append(t_caption)
                _log(f"app cold start {i + 1}/{runs}: server {t_ready:.1f} s, first result {t_first:.1f} s, "
                     f"caption {t_caption:.1f} s")
            except Exception as exc:  # noqa: BLE001 - recorded, the benchmark goes on
                log.seek(0)
                tail = log.read().decode(errors="replace")[-600:]
                errors.append(f"{type(exc).__name__}: {str(exc)[:200]} | server log: {tail}")
                _log(f"app run {i + 1} failed: {errors[-1]}")
            finally:
                try:
                    os.killpg(proc.pid, 15)
                    proc.wait(timeout=10)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    try:
                        os.killpg(proc.pid, 9)
                    except ProcessLookupError:
                        pass
                ctx.close()
                log.close()
                shutil.rmtree(profile, ignore_errors=True)
    out = {"runs": len(first), "errors": errors, "result_marker": APP_RESULT_JS}
    if first:
        out["cold_start_s"] = rep.add(section, "cold start -> first result in browser", first, unit="s",
                                      key="app_cold_start_s", scale=1.0,
                                      note="server start to the molecule view of the default example")
        out["caption_s"] = rep.add(section, "cold start -> caption rendered", captioned, unit="s", scale=1.0,
                                   key=None,
                                   note="the second pass: the same molecule with its 64-token greedy caption")
        out["server_ready_s"] = rep.add(section, "cold start -> server answers /_stcore/health", ready,
                                        unit="s", scale=1.0)
    else:
        rep.skip(section, "every run failed: " + (errors[0] if errors else "?"))
    return out


def bench_map(model, rep: Report, runs: int, warmup: int, folder=None, section: str = "map") -> dict:
    """Placing a new molecule on the reference map: ``ReferenceSet.place`` for a computed trace (what the
    app does once the analysis is there), and analysis without caption + placement."""
    from .paths import REFERENCE_DIR

    try:
        from .reference import ReferenceSet
    except ImportError as exc:
        rep.skip(section, f"hsanet.reference is not available ({exc})")
        return {}
    folder = Path(folder) if folder else REFERENCE_DIR
    if not folder.is_dir():
        rep.skip(section, f"no reference set at {folder} (build it with `hsanet reference build`)")
        return {}
    t0 = time.perf_counter()
    ref = ReferenceSet.load(folder)
    load_s = time.perf_counter() - t0
    stages = list(ref.stages)
    smiles = [s for _, s in MOLECULES.values()] + [s for s, _ in FALLBACK_POOL[:5]]
    traces = [model.analyze(s, caption=False) for s in smiles]
    out = {"load_s": load_s, "stages": [str(s) for s in stages], "reference_size": len(ref)}
    stage = stages[-1]                                   # the app's default stage

    def place_one(trace, st):
        try:                                             # exact=False: compute even if the molecule is in the set
            return ref.place(trace, st, exact=False)
        except TypeError:
            return ref.place(trace, st)

    try:
        t0 = time.perf_counter()
        place_one(traces[0], stage)
        out["first_place_ms"] = (time.perf_counter() - t0) * 1000.0
    except Exception as exc:  # noqa: BLE001 - e.g. a reference set built with another model
        rep.skip(section, f"place() failed: {type(exc).__name__}: {exc}")
        return out
    it = iter(range(10 ** 9))

    def place(st=stage):
        place_one(traces[next(it) % len(traces)], st)

    out["place_ms"] = rep.add(section, f"place a new molecule on the map ({stage})", _timeit(place, runs, warmup),
                              key="map_place_ms_median", note=f"{len(ref)} reference molecules; trace given")

    def analyze_place():
        place_one(model.analyze(smiles[next(it) % len(smiles)], caption=False), stage)

    out["analyze_place_ms"] = rep.add(section, "analysis (no caption) + place on the map",
                                      _timeit(analyze_place, runs, warmup))
    rep.add(section, "first place() in the process", out["first_place_ms"], unit="ms")
    rep.add(section, "ReferenceSet.load()", load_s * 1000.0, unit="ms")
    for st in stages[:-1]:
        out[f"place_ms_{st}"] = rep.add(section, f"place a new molecule on the map ({st})",
                                        _timeit(lambda st=st: place(st), runs, warmup))
    return out


def bench_gpu(model, rep: Report, runs: int, warmup: int, quick: bool, data_dir=None, device: str = "cuda") -> dict:
    """The CPU sections on the GPU in float32 and bf16 autocast, and mamba-ssm's kernel vs the PyTorch scans.

    ``device`` may be "cpu" to dry-run this code path on a machine without CUDA (tests only).
    """
    import torch
    import torch.nn.functional as F

    from .projectors import scan as scan_mod

    gmodel = copy.deepcopy(model).to(device).eval()
    sync = torch.cuda.synchronize if device.startswith("cuda") else None
    dev_type = torch.device(device).type
    out = {"device": torch.cuda.get_device_name(device) if dev_type == "cuda" else device,
           "mamba_backend": scan_mod.backend_for(device)}
    for prec in ("fp32", "bf16"):
        ac = (lambda: torch.autocast(dev_type, dtype=torch.bfloat16)) if prec == "bf16" else None
        sec = f"gpu-{prec}"
        res = {}
        res["latency"] = bench_latency(gmodel, rep, runs, warmup, True, sync=sync, autocast=ac, section=sec,
                                       sizes=[HEADLINE])
        res["embed"] = bench_embed(gmodel, rep, runs, warmup, True, data_dir, sync=sync, autocast=ac, section=sec,
                                   batches=(256,) if quick else EMBED_BATCHES)
        sc = bench_scaling(gmodel, rep, runs, warmup, sync=sync, autocast=ac, section=sec,
                           sizes=(50, 400) if quick else SCALING_SIZES, scan_backward=False)
        res["mamba_400_over_50"] = sc.get("mamba_400_over_50")
        res["attn_400_over_50"] = sc.get("attn_400_over_50")
        res["scaling"] = {k: sc[k] for k in ("attn_ms", "mamba_ms")}
        out[prec] = res
    # training on the device: the caption recipe in the default precision (bf16-mixed on GPUs)
    if gmodel.decoder is not None:
        out["train"] = bench_train(gmodel, rep, 10 if not quick else 3, 2 if not quick else 1, True, data_dir,
                                   section="gpu-train", sync=sync)
    # the scan kernels on the device
    kernel = scan_mod._mamba_kernel if dev_type == "cuda" else None
    cfg = gmodel.config
    dim, state = cfg.expand * cfg.proj_dim, cfg.d_state
    scans = {}
    for bsz in (1, 256):
        for n in ((50, 400) if quick else SCALING_SIZES):
            g = torch.Generator().manual_seed(n)
            r = lambda *s: torch.randn(*s, generator=g).to(device)  # noqa: E731
            args = [r(bsz, dim, n), F.softplus(r(bsz, dim, n) - 2.0), -torch.exp(r(dim, state) * 0.5),
                    r(bsz, state, n), r(bsz, state, n), r(dim), r(bsz, dim, n)]
            fns = {"parallel": scan_mod.selective_scan_parallel,
                   "readout": lambda *a: scan_mod.selective_scan_readout(*a, num_out=cfg.num_queries)}
            if kernel is not None:
                fns["mamba-ssm kernel"] = lambda *a: kernel(*[t.contiguous() for t in a[:5]], a[5], a[6].contiguous(),
                                                            delta_bias=None, delta_softplus=False)
            res = {}
            for name, fn in fns.items():
                def fwd(fn=fn):
                    with torch.no_grad():
                        fn(*args)

                res[name] = rep.add("gpu-scan", f"scan {name}, batch {bsz}, L={n}, forward",
                                    _timeit(fwd, runs, warmup, sync))
            if kernel is not None:
                with torch.no_grad():
                    res["max_abs_diff_kernel_vs_parallel"] = float(
                        (fns["mamba-ssm kernel"](*args) - scan_mod.selective_scan_parallel(*args)).abs().max())
            scans[f"b{bsz}_L{n}"] = res
    out["scan"] = scans
    if kernel is None:
        out["kernel_note"] = "mamba-ssm is not importable here: only the PyTorch scans were timed"
    return out


def _profile(model, rep: Report) -> None:
    """torch.profiler tables of the headline measurements (printed to stderr)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from .chem import featurize, parse

    smi = MOLECULES[HEADLINE][1]
    model.analyze(smi, caption=False)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(5):
            model.analyze(smi, caption=False)
    print("\n== profile: analyze(caption=False), 5 runs ==", file=sys.stderr)
    print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=25), file=sys.stderr)
    pool = _drug_like_pool(256)
    graph = featurize([parse(s) for s in pool])
    with torch.no_grad():
        model.encode(graph)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            model.encode(graph)
    print("\n== profile: encode(), batch 256 ==", file=sys.stderr)
    print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=25), file=sys.stderr)


# ------------------------------------------------------------------------------------- driver
SECTIONS = ("latency", "embed", "scaling", "train", "app", "map", "gpu")


def run(args) -> dict:
    import torch

    if args.threads:
        torch.set_num_threads(int(args.threads))
    quick = bool(args.quick)
    runs = args.runs or (3 if quick else 20)
    warmup = 1 if quick else 3
    want = set(args.sections.split(",")) if args.sections else set(SECTIONS)
    if "analysis" in want:              # another name of the latency section (analysis, caption)
        want = (want - {"analysis"}) | {"latency"}
    if quick and not args.sections:
        want.discard("map")            # loading the reference set (UMAP) is not a smoke-test matter
        rep_skip_map = True
    else:
        rep_skip_map = False
    unknown = want - set(SECTIONS)
    if unknown:
        from .cli import UsageError

        raise UsageError(f"unknown sections {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    app = args.app if args.app is not None else not quick
    rep = Report(quick)
    if rep_skip_map:
        rep.skip("map", "skipped in --quick (add --sections ...,map)")
    started = time.time()
    device = "cpu"
    model, label = load_model(args.checkpoint, device, args.data_dir)
    torch.manual_seed(0)
    _log(f"model: {label}; torch threads {torch.get_num_threads()}")
    res = rep.result
    res.update({
        "device": "cpu",
        "model": label,
        "parameters_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "command": _command(args),
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "torch": torch.__version__, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "processor": _cpu_name(), "cuda": torch.cuda.is_available()},
        "runs": runs, "warmup": warmup,
        "molecules": {k: {"name": n, "smiles": s} for k, (n, s) in MOLECULES.items()},
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
    })
    if args.profile:
        _profile(model, rep)
    sections = res["sections"]
    if "latency" in want:
        _log("latency ...")
        sections["latency"] = bench_latency(model, rep, runs, warmup, quick)
    if "embed" in want:
        _log("embedding throughput ...")
        sections["embed"] = bench_embed(model, rep, runs, warmup, quick, args.data_dir)
    if "scaling" in want:
        _log("projector scaling ...")
        sections["scaling"] = bench_scaling(model, rep, runs, warmup, sizes=(50, 400) if quick else SCALING_SIZES,
                                            scan_backward=not quick)
    if "train" in want:
        _log("training throughput ...")
        sections["train"] = bench_train(model, rep, 10 if not quick else 3, 2 if not quick else 1, quick,
                                        args.data_dir)
    if "map" in want:
        _log("map placement ...")
        sections["map"] = bench_map(model, rep, runs, warmup, args.reference)
    if "app" in want and app:
        _log("app cold start ...")
        sections["app"] = bench_app(rep, args.app_runs or (runs if not quick else 1), args.checkpoint)
    elif "app" in want:
        rep.skip("app", "--no-app" if args.app is False else "skipped in --quick (add --app)")
    if "gpu" in want:
        if torch.cuda.is_available():
            _log("GPU ...")
            sections["gpu"] = bench_gpu(model, rep, runs, warmup, quick, args.data_dir)
        else:
            rep.skip("gpu", "CUDA is not available")

    # headline keys
    lat = sections.get("latency", {}).get(HEADLINE, {})
    sc = sections.get("scaling", {})
    res["analysis_ms_median"] = lat.get("analysis_ms")
    res["caption_ms_median"] = lat.get("caption_ms_kv")
    res["caption_nocache_ms_median"] = lat.get("caption_ms_nocache")
    res["embed_per_s_b256"] = sections.get("embed", {}).get("b256", {}).get("mol_per_s")
    res["embed_e2e_per_s_b256"] = sections.get("embed", {}).get("b256", {}).get("e2e_mol_per_s")
    res["mamba_400_over_50"] = sc.get("mamba_400_over_50")
    res["attn_400_over_50"] = sc.get("attn_400_over_50")
    tr = sections.get("train", {})
    res["train_mol_per_s"] = tr.get("mol_per_s")
    res["train_tokens_per_s"] = tr.get("tokens_per_s")
    res["train_tflops"] = tr.get("tflops")
    res["train_mfu"] = tr.get("mfu")
    res["train_precision"] = tr.get("precision")
    res["peak_bf16_tflops"] = tr.get("peak_bf16_tflops")
    res["peak_fp32_tflops"] = tr.get("peak_fp32_tflops")
    res["train_wide_mfu"] = tr.get("wide", {}).get("mfu")
    res["train_property_mol_per_s"] = tr.get("property", {}).get("mol_per_s")
    res["app_cold_start_s"] = sections.get("app", {}).get("cold_start_s")
    res["app_cold_start_caption_s"] = sections.get("app", {}).get("caption_s")
    res["map_place_ms_median"] = sections.get("map", {}).get("place_ms")
    res["targets"] = {}
    for key, (op, value, what) in TARGETS.items():
        got = res.get(key)
        res["targets"][key] = {"target": f"{op} {value:g}", "what": what, "value": got,
                               "met": None if got is None else _met(key, got)[1]}
    res["rows"] = [asdict(r) for r in rep.rows]
    res["wall_s"] = round(time.time() - started, 1)
    return res


def _command(args) -> str:
    """The command line that reproduces this run (options that differ from the defaults)."""
    parts = ["hsanet bench"]
    for flag, value, default in (("--quick", args.quick, False), ("--checkpoint", args.checkpoint, None),
                                 ("--runs", args.runs, None), ("--threads", args.threads, 0),
                                 ("--sections", args.sections, None), ("--app-runs", args.app_runs, None),
                                 ("--reference", args.reference, None),
                                 ("--json", args.json, "bench.json")):
        if value != default:
            parts.append(flag if value is True else f"{flag} {value}")
    if args.app is not None:
        parts.append("--app" if args.app else "--no-app")
    return " ".join(parts)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _json_default(o):
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
    except ImportError:
        pass
    return str(o)


def cmd_bench(args) -> int:
    res = run(args)
    print(f"HSA-Net benchmark: model {res['model']}, device {res['device']}, "
          f"{res['machine']['processor']} ({res['machine']['cpu_count']} CPUs, torch threads "
          f"{res['machine']['torch_threads']}), median of {res['runs']} runs after {res['warmup']} warm-up runs")
    rows = [Row(**r) for r in res["rows"]]
    rep = Report(res["quick"])
    rep.rows = rows
    print(rep.table())
    print("\ntargets:")
    for key, t in res["targets"].items():
        v = t["value"]
        shown = "not measured" if v is None else f"{v:.4g}"
        verdict = "" if t["met"] is None else ("met" if t["met"] else "MISSED")
        print(f"  {key:<22} {shown:>14}  target {t['target']:<8} {verdict}  ({t['what']})")
    for section, why in res["skipped"].items():
        print(f"  skipped {section}: {why}")
    text = json.dumps(res, indent=2, default=_json_default)
    if args.json == "-":
        print(text)
    else:
        Path(args.json).write_text(text + "\n")
        print(f"\nwrote {args.json} ({res['wall_s']} s)")
    return 0


def register(sub) -> None:
    p = sub.add_parser("bench", help="latency, throughput and scaling benchmarks (table + JSON)")
    p.add_argument("--quick", action="store_true", help="3 runs, no app, shortened sections (< 60 s; smoke runs)")
    p.add_argument("--json", default="bench.json", help="JSON output file ('-' for stdout; default bench.json)")
    p.add_argument("--checkpoint", help="model under test (default: assets/hsanet-default, else untrained)")
    p.add_argument("--runs", type=int, help="timed runs per measurement (default 20, --quick 3)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--sections", help=f"comma-separated subset of {','.join(SECTIONS)} (analysis = latency)")
    p.add_argument("--app", dest="app", action="store_true", default=None,
                   help="measure the app's cold start (default: on, off with --quick)")
    p.add_argument("--no-app", dest="app", action="store_false")
    p.add_argument("--app-runs", type=int, help="cold starts to time (default: --runs)")
    p.add_argument("--profile", action="store_true", help="print torch.profiler tables of the headline paths first")
    p.add_argument("--reference", help="reference set folder for the map section (default assets/reference)")
    p.add_argument("--data-dir", help="data folder (default ../shared/data or $HSANET_DATA)")
    p.set_defaults(func=cmd_bench)


__all__ = ["register", "run", "MOLECULES", "TARGETS"]
