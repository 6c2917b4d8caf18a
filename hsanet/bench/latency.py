"""The ``latency``, ``embed`` and ``scaling`` sections: one molecule through ``analyze`` and a 64-token
caption, embedding throughput, and E_Attn / E_Mamba against molecule size."""
from __future__ import annotations

import sys
import time
from contextlib import nullcontext

from hsanet.bench.core import CAPTION_TOKENS, EMBED_BATCHES, HEADLINE, MOLECULES, Report, Row, SCALING_SIZES, chebi, drug_like_pool, stats, target_met, timeit


# ------------------------------------------------------------------------------------- sections
def bench_latency(model, rep: Report, runs: int, warmup: int, quick: bool, sync=None, autocast=None,
                  section: str = "latency", sizes=None) -> dict:
    """Per-stage latency of analyze() and of a 64-token greedy caption, per molecule size."""
    import torch

    from hsanet.featurizers import featurize, parse

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
                res["caption_tokens"] = caption_length(model, fused, mol.smiles)
            key = "caption_ms_median" if size == HEADLINE else None
            nc_runs = runs if not quick else 1
            if copy_head is not None:
                # the model's own decoding: pointer-generator greedy loop over the KV cache (no cache-less mode)
                res["caption_ms_kv"] = rep.add(
                    section, f"{label}: caption 64 tok greedy (copy head), KV cache",
                    timeit(caption_call(model, mol, fused, ctx, True), runs, warmup, sync), key=key,
                    note=decoding_note(model))
                res["caption_ms_lm_kv"] = rep.add(
                    section, f"{label}: caption 64 tok greedy, plain LM, KV cache",
                    timeit(caption_call(model, mol, fused, ctx, True, plain=True), runs, warmup, sync),
                    note="transformers generate(), copy head off")
                res["caption_ms_nocache"] = rep.add(
                    section, f"{label}: caption 64 tok greedy, plain LM, no cache",
                    timeit(caption_call(model, mol, fused, ctx, False, plain=True), nc_runs, min(warmup, 1), sync),
                    note="transformers generate(use_cache=False), copy head off")
            else:
                res["caption_ms_kv"] = rep.add(section, f"{label}: caption 64 tok greedy, KV cache",
                                               timeit(caption_call(model, mol, fused, ctx, True), runs, warmup, sync),
                                               key=key, note=decoding_note(model))
                res["caption_ms_nocache"] = rep.add(
                    section, f"{label}: caption 64 tok greedy, no cache",
                    timeit(caption_call(model, mol, fused, ctx, False), nc_runs, min(warmup, 1), sync))
        out[size] = res
    return out


def decoding_note(model) -> str:
    cfg = model.config
    parts = [f"no_repeat_ngram {getattr(cfg, 'no_repeat_ngram_size', 0) or 'off'}"]
    if getattr(cfg, "rerank", False) and cfg.retrieval_k:
        n = getattr(cfg, "rerank_neighbours", 0) or cfg.retrieval_k
        parts.append(f"+ rerank over {n} neighbours' captions"
                     + (" with consensus" if getattr(cfg, "rerank_consensus", 0) else ""))
    return "as analyze: " + ", ".join(parts)


def caption_call(model, mol, fused, ctx, use_cache: bool, plain: bool = False):
    """The caption stage of ``analyze`` for one molecule, 64 tokens exactly (EOS suppressed):
    neighbour look-up, prompt, greedy decoding and, when configured, reranking. ``plain`` switches
    the copy head off, so transformers' generate() decodes (the only path with a cache-less mode)."""
    dec = model.decoder

    def go():
        with ctx():
            cfg = model.config
            rerank = not plain and getattr(cfg, "rerank", False) and hasattr(model, "rerank")
            k = cfg.retrieval_k
            hits = model.references([mol.smiles], k=max(k, getattr(cfg, "rerank_neighbours", 0)) if rerank else k)
            refs = [hits[0][:k]]
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
            if rerank and hits[0]:          # as decode: the reranking pool, with the consensus terms
                model.rerank(fused, prompts, [[caps[0]] + [n.caption for n in hits[0]]],
                             [[None] + [n.similarity for n in hits[0]]])
    return go


def caption_length(model, fused, smiles: str) -> int:
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

    from hsanet.featurizers import featurize, parse

    ctx = autocast or nullcontext
    pool = drug_like_pool(max(batches) * 2, data_dir)
    out = {"pool": "ChEBI-20 test molecules with 10-50 heavy atoms" if chebi("test", data_dir) else "built-in"}
    for b in batches:
        n_runs = max(runs, 50) if b == 1 and not quick else runs
        batches_smi = [pool[(i * b) % len(pool):][:b] for i in range(n_runs + warmup)]
        batches_smi = [x if len(x) == b else (x + pool)[:b] for x in batches_smi]
        it = iter(batches_smi)

        def end_to_end():
            smi = next(it)
            with torch.no_grad(), ctx():
                model.embed(featurize([parse(s, model.config.max_atoms) for s in smi]))

        per = timeit(end_to_end, n_runs, warmup, sync)
        graph = featurize([parse(s, model.config.max_atoms) for s in batches_smi[0]])

        def model_only():
            with torch.no_grad(), ctx():
                model.embed(graph)

        per_m = timeit(model_only, n_runs, warmup, sync)
        key = "embed_per_s_b256" if b == 256 else None
        rate_m = b / stats(per_m)[0]
        target, met = target_met(key, rate_m) if key else ("", None)
        rep.rows.append(Row(section, f"embedding (embed), batch {b}", rate_m, b / stats(per_m)[1], "mol/s",
                            len(per_m), target, met, "featurized batch; p90 column = rate at the p90 time"))
        rate = b / stats(per)[0]
        rep.rows.append(Row(section, f"SMILES -> embedding, batch {b}", rate, b / stats(per)[1], "mol/s",
                            len(per), note="parse + featurize + embed"))
        out[f"b{b}"] = {"mol_per_s": rate_m, "e2e_mol_per_s": rate, "batch_ms": stats(per_m)[0] * 1000.0,
                        "e2e_batch_ms": stats(per)[0] * 1000.0}
    return out


def chain_inputs(model, n: int):
    """GIN level states and serialization of the alkane chain C_n (real features of a synthetic molecule)."""
    import torch

    from hsanet.featurizers import featurize, parse
    from hsanet.featurizers.graph import serialize_batch

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

    from hsanet.nn.selective_scan import selective_scan_parallel, selective_scan_readout, selective_scan_ref

    ctx = autocast or nullcontext
    attn, mamba = model.hap.attn[-1], model.hap.mamba[-1]          # the projectors of the last level
    out = {"attn_ms": {}, "mamba_ms": {}, "encode_ms": {}, "scan": {}}
    for n in sizes:
        batch, levels, ser = chain_inputs(model, n)
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

        out["attn_ms"][n] = rep.add(section, f"E_Attn, chain of {n} atoms", timeit(run_attn, runs, warmup, sync))
        out["mamba_ms"][n] = rep.add(section, f"E_Mamba, chain of {n} atoms", timeit(run_mamba, runs, warmup, sync))
        out["encode_ms"][n] = rep.add(section, f"whole encode(), chain of {n} atoms",
                                      timeit(run_encode, max(3, runs // 2), min(warmup, 1), sync))
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

            res[f"{name}_fwd_ms"] = rep.add(section, f"scan {name}, L={n}, forward", timeit(fwd, runs, warmup, sync))
            if scan_backward:
                leaves = [a.clone().requires_grad_(True) for a in args]

                def fwd_bwd(fn=fn, leaves=leaves):
                    fn(*leaves).sum().backward()

                res[f"{name}_fwd_bwd_ms"] = rep.add(section, f"scan {name}, L={n}, forward+backward",
                                                    timeit(fwd_bwd, runs, warmup, sync))
        out["scan"][n] = res
    return out


def profile(model, rep: Report) -> None:
    """torch.profiler tables of the headline measurements (printed to stderr)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from hsanet.featurizers import featurize, parse

    smi = MOLECULES[HEADLINE][1]
    model.analyze(smi, caption=False)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(5):
            model.analyze(smi, caption=False)
    print("\n== profile: analyze(caption=False), 5 runs ==", file=sys.stderr)
    print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=25), file=sys.stderr)
    pool = drug_like_pool(256)
    graph = featurize([parse(s) for s in pool])
    with torch.no_grad():
        model.encode(graph)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            model.encode(graph)
    print("\n== profile: encode(), batch 256 ==", file=sys.stderr)
    print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=25), file=sys.stderr)
