"""Smoke tests of ``hsanet bench`` (hsanet/bench/). Benchmarks are not tests: these only check that
``hsanet bench --quick`` runs on a tiny untrained model and writes the JSON keys the issue names, and
that the GPU section's code runs (dry-run on the CPU, in bf16 autocast) where there is no GPU.
"""
from __future__ import annotations

import json
import math

import pytest

from hsanet.bench import Report, bench_gpu
from hsanet.cli import main

KEYS = ("analysis_ms_median", "caption_ms_median", "embed_per_s_b256", "mamba_400_over_50", "attn_400_over_50",
        "train_mol_per_s", "device")


def test_bench_quick_writes_the_keys(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "bench.json"
    rc = main(["bench", "--quick", "--json", str(out), "--checkpoint", str(tiny_checkpoint), "--threads", "1",
               "--sections", "latency,embed,scaling,train"])
    printed = capsys.readouterr().out
    assert rc == 0
    res = json.loads(out.read_text())
    for key in KEYS:
        assert key in res, key
    assert res["device"] == "cpu"
    for key in KEYS[:-1]:
        assert isinstance(res[key], float) and math.isfinite(res[key]) and res[key] > 0, (key, res[key])
    # the training keys: throughput, FLOP/s, this machine's peaks measured in the run, utilisation
    for key in ("train_mol_per_s", "train_tokens_per_s", "train_tflops", "peak_bf16_tflops", "peak_fp32_tflops",
                "train_mfu"):
        assert isinstance(res[key], float) and math.isfinite(res[key]) and res[key] > 0, (key, res[key])
    assert res["train_mfu"] < 1 and res["train_tflops"] < max(res["peak_bf16_tflops"], res["peak_fp32_tflops"])
    tr = res["sections"]["train"]
    assert tr["caption"]["batch_size"] == 16 and tr["caption"]["flops_per_step"] > 0
    assert tr["property"]["mol_per_s"] > 0 and tr["property"]["flops_per_step"] > 0
    # the caption benchmark really generates 64 tokens (EOS suppressed)
    assert res["sections"]["latency"]["30"]["caption_tokens"] == 64
    assert set(res["targets"]) >= {"analysis_ms_median", "caption_ms_median", "embed_per_s_b256", "mamba_400_over_50"}
    assert res["rows"] and {"section", "name", "median", "p90", "unit", "target", "met"} <= set(res["rows"][0])
    # the table and the verdicts are printed
    assert "analysis total, no caption" in printed and "targets:" in printed


def test_bench_gpu_section_dry_run_on_cpu(small_model):
    rep = Report(quick=True)
    out = bench_gpu(small_model, rep, runs=1, warmup=0, quick=True, device="cpu")
    assert out["fp32"]["mamba_400_over_50"] > 0 and out["bf16"]["attn_400_over_50"] > 0
    assert {"b1_L50", "b256_L400"} <= set(out["scan"])
    assert any(r.section == "gpu-bf16" for r in rep.rows)
    assert out["train"]["mol_per_s"] > 0 and any(r.section == "gpu-train" for r in rep.rows)


def test_bench_bad_section_is_a_usage_error(capsys):
    assert main(["bench", "--quick", "--sections", "nope", "--json", "-"]) == 2
    assert "unknown sections" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--app", "--no-app"])
def test_app_flags_parse(flag):
    from hsanet.cli import build_parser

    args = build_parser().parse_args(["bench", "--quick", flag])
    assert args.app is (flag == "--app")


def test_gpu_check_script_is_valid_bash():
    """scripts/gpu_check.sh runs only on a GPU machine; here its syntax is checked (bash -n)."""
    import subprocess
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "scripts" / "gpu_check.sh"
    assert script.exists()
    proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
