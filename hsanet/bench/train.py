"""The ``train`` section: caption-training throughput of the model's config (and a wide LM), with
the measured matrix-unit peak beside it."""
from __future__ import annotations

import copy
from pathlib import Path

from hsanet.bench.core import FALLBACK_POOL, Report, Row, autocast, chebi, drug_like_pool, measure_peak, stats, timeit


def step_flops(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def caption_train_rate(net, rep: Report, section: str, label: str, bs: int, steps: int, warmup: int,
                        smiles, caps, precision: str, peak: float, sync=None) -> dict:
    """Caption-training steps as ``hsanet train`` runs them: collate, forward under the precision's
    autocast, backward, clipping, AdamW; FLOPs of the same batches counted by torch's FlopCounterMode."""
    import torch

    from hsanet.retrieval import FingerprintIndex
    from hsanet.training.caption import prepare_dataset
    from hsanet.training.data import LengthGroupedSampler, collate
    from hsanet.training.module import CaptionModule

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
        with autocast(device, precision):
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

    per = timeit(step, steps, warmup, sync)
    timed = done[warmup:]
    flops = []
    for idx in timed:                       # the same batches again, counted (not timed)
        flops.append(step_flops(lambda: loss_of(idx).backward()))
        opt.zero_grad(set_to_none=True)
    n_mols = sum(len(i) for i in timed)
    g = net.config.num_levels * net.config.num_queries + net.config.num_motif_queries
    n_tok = sum(len(ds[i].prompt) + len(ds[i].target) + g for idx in timed for i in idx)
    seconds = sum(per)
    tflops = sum(flops) / seconds / 1e12
    out = {"mol_per_s": n_mols / seconds, "tokens_per_s": n_tok / seconds, "batch_size": bs, "steps": len(per),
           "step_ms_median": stats(per)[0] * 1000.0, "flops_per_step": sum(flops) / len(flops),
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

    from hsanet.training.caption import default_precision

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
    data = chebi("validation", data_dir)
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
    out["caption"] = caption_train_rate(net, rep, section, "caption training (default recipe)", bs, steps,
                                         warmup, smiles, caps, precision, peak, sync)
    out.update({k: out["caption"][k] for k in ("mol_per_s", "tokens_per_s", "tflops", "mfu", "step_ms_median")})
    del net
    # property recipe: the frozen encoder's read-out for the heads, as training/property.py runs it
    from hsanet.featurizers import featurize, parse

    pool = drug_like_pool(128, data_dir)
    mols = [parse(s) for s in pool]
    graph = featurize(mols).to(model.device)
    model.eval()

    def readout():
        with torch.no_grad():
            enc = model.encode(graph)
            model.property_features(enc["levels"], enc["batch"].batch, enc["embedding"])

    per = timeit(readout, steps, warmup, sync)
    # FlopCounterMode's module tracker cannot hook parameters that require grad inside no_grad
    needs = [p for p in model.parameters() if p.requires_grad]
    for p in needs:
        p.requires_grad_(False)
    try:
        flops = step_flops(readout)
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
        from hsanet.config import HSANetConfig
        from hsanet.models.hsanet import HSANet

        cfg = HSANetConfig.from_dict({**model.config.to_dict(), "lm_dim": 512, "lm_layers": 8, "lm_heads": 8,
                                      "property_tasks": {}})
        torch.manual_seed(0)
        wide = HSANet(cfg, model.tokenizer).to(model.device)
        out["wide"] = caption_train_rate(wide, rep, section, "caption training, wide LM (d 512, 8 layers)", bs,
                                          max(3, steps // 4), 1, smiles, caps, precision, peak, sync)
    return out
