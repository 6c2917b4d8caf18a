"""The ``gpu`` section: the headline paths on CUDA in float32 and bf16 autocast, and mamba-ssm's
kernel against the PyTorch scans."""
from __future__ import annotations

import copy

from hsanet.bench.core import EMBED_BATCHES, HEADLINE, Report, SCALING_SIZES, timeit
from hsanet.bench.latency import bench_embed, bench_latency, bench_scaling
from hsanet.bench.train import bench_train


def bench_gpu(model, rep: Report, runs: int, warmup: int, quick: bool, data_dir=None, device: str = "cuda") -> dict:
    """The CPU sections on the GPU in float32 and bf16 autocast, and mamba-ssm's kernel vs the PyTorch scans.

    ``device`` may be "cpu" to dry-run this code path on a machine without CUDA (tests only).
    """
    import torch
    import torch.nn.functional as F

    from hsanet.nn import selective_scan as scan_mod

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
                                    timeit(fwd, runs, warmup, sync))
            if kernel is not None:
                with torch.no_grad():
                    res["max_abs_diff_kernel_vs_parallel"] = float(
                        (fns["mamba-ssm kernel"](*args) - scan_mod.selective_scan_parallel(*args)).abs().max())
            scans[f"b{bsz}_L{n}"] = res
    out["scan"] = scans
    if kernel is None:
        out["kernel_note"] = "mamba-ssm is not importable here: only the PyTorch scans were timed"
    return out
