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
  real GIN level states), and the scans of hsanet.nn.selective_scan against the step-by-step recurrence;
* ``train``    caption-training throughput (molecules / s) of the model's config: AdamW steps of
  ``CaptionModule._loss`` on ChEBI-20 validation molecules with retrieved references;
* ``app``      cold start of the Streamlit app to the first rendered result in headless Chromium, and
  on the warm server paste -> first results / caption and click an example -> caption
  (Playwright), and ``map``: the time ``ReferenceSet.place`` takes to put a new molecule on the map;
* ``gpu``      when CUDA is present: the same on the GPU in float32 and bf16 autocast, and mamba-ssm's
  kernel (when importable) against the PyTorch scans.

Benchmarks are not tests: the numbers depend on the machine and its load. The JSON holds the
headline keys (``analysis_ms_median``, ``caption_ms_median``, ``embed_per_s_b256``,
``mamba_400_over_50``, ``attn_400_over_50``, ``train_mol_per_s``, ``device``), the targets and
every row of the table.
"""
from __future__ import annotations

import os
import platform
import time
from dataclasses import asdict

from hsanet.bench.app import bench_app, bench_map
from hsanet.bench.core import HEADLINE, MOLECULES, Report, SCALING_SIZES, TARGETS, cpu_name, load_model, say, target_met
from hsanet.bench.gpu import bench_gpu
from hsanet.bench.latency import bench_embed, bench_latency, bench_scaling, profile
from hsanet.bench.train import bench_train


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
        from hsanet.cli.errors import UsageError

        raise UsageError(f"unknown sections {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    app = args.app if args.app is not None else not quick
    rep = Report(quick)
    if rep_skip_map:
        rep.skip("map", "skipped in --quick (add --sections ...,map)")
    started = time.time()
    device = "cpu"
    model, label = load_model(args.checkpoint, device, args.data_dir)
    torch.manual_seed(0)
    say(f"model: {label}; torch threads {torch.get_num_threads()}")
    res = rep.result
    res.update({
        "device": "cpu",
        "model": label,
        "parameters_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "command": _command(args),
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "torch": torch.__version__, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "processor": cpu_name(), "cuda": torch.cuda.is_available()},
        "runs": runs, "warmup": warmup,
        "molecules": {k: {"name": n, "smiles": s} for k, (n, s) in MOLECULES.items()},
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
    })
    if args.profile:
        profile(model, rep)
    sections = res["sections"]
    if "latency" in want:
        say("latency ...")
        sections["latency"] = bench_latency(model, rep, runs, warmup, quick)
    if "embed" in want:
        say("embedding throughput ...")
        sections["embed"] = bench_embed(model, rep, runs, warmup, quick, args.data_dir)
    if "scaling" in want:
        say("projector scaling ...")
        sections["scaling"] = bench_scaling(model, rep, runs, warmup, sizes=(50, 400) if quick else SCALING_SIZES,
                                            scan_backward=not quick)
    if "train" in want:
        say("training throughput ...")
        sections["train"] = bench_train(model, rep, 10 if not quick else 3, 2 if not quick else 1, quick,
                                        args.data_dir)
    if "map" in want:
        say("map placement ...")
        sections["map"] = bench_map(model, rep, runs, warmup, args.reference)
    if "app" in want and app:
        say("app cold start ...")
        sections["app"] = bench_app(rep, args.app_runs or (runs if not quick else 1), args.checkpoint)
    elif "app" in want:
        rep.skip("app", "--no-app" if args.app is False else "skipped in --quick (add --app)")
    if "gpu" in want:
        if torch.cuda.is_available():
            say("GPU ...")
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
    for key in ("paste_first_s", "paste_caption_s", "click_caption_s"):
        res[f"app_{key}"] = sections.get("app", {}).get(key)
    res["map_place_ms_median"] = sections.get("map", {}).get("place_ms")
    res["targets"] = {}
    for key, (op, value, what) in TARGETS.items():
        got = res.get(key)
        res["targets"][key] = {"target": f"{op} {value:g}", "what": what, "value": got,
                               "met": None if got is None else target_met(key, got)[1]}
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
