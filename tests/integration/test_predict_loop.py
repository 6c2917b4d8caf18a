"""Batch inference under Lightning's predict loop (hsanet/inference/predict.py): ``hsanet evaluate --devices``
and ``hsanet analyze --file --devices`` give the same rows, in the same order, as the plain loop,
with 1 device in-process and with 2 CPU processes (DDP, gloo)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hsanet.inference.predict import predict_rows

from conftest import MOLECULES

HSANET = str(Path(sys.executable).parent / "hsanet")


def test_predict_rows_one_device_keeps_order(small_model):
    rows = list(range(23))
    got = predict_rows(small_model, rows, lambda chunk: [r * r for r in chunk], batch_size=4, devices=1,
                       accelerator="cpu")
    assert got == [r * r for r in rows]


def _run(args, cwd):
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    proc = subprocess.run([HSANET, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def _strip(obj: dict) -> dict:
    return {k: v for k, v in obj.items() if k not in ("timings_ms",)}


@pytest.mark.timeout(600)
def test_analyze_file_under_ddp_equals_plain_loop(tiny_checkpoint, tmp_path):
    f = tmp_path / "mols.smi"
    f.write_text("\n".join(MOLECULES[:5] + ["not a molecule"]) + "\n")
    common = ["analyze", "--file", str(f), "--checkpoint", str(tiny_checkpoint), "--max-new-tokens", "8"]
    plain = [json.loads(x) for x in _run(common, tmp_path).splitlines()]
    ddp = [json.loads(x) for x in _run(common + ["--devices", "2", "--strategy", "ddp"], tmp_path).splitlines()]
    assert len(plain) == len(ddp) == 6
    assert [_strip(a) for a in plain] == [_strip(b) for b in ddp]
    assert "error" in ddp[-1]


@pytest.mark.timeout(600)
def test_evaluate_under_predict_loop_equals_plain_loop(tiny_checkpoint, tmp_path):
    from hsanet.data.chebi import chebi_path

    try:
        chebi_path("test")
    except FileNotFoundError:
        pytest.skip("ChEBI-20 not found")
    base = ["evaluate", "--checkpoint", str(tiny_checkpoint), "--split", "test", "--limit", "6", "--batch-size", "2"]
    _run(base + ["--out", str(tmp_path / "plain")], tmp_path)
    _run(base + ["--out", str(tmp_path / "one"), "--devices", "1"], tmp_path)
    _run(base + ["--out", str(tmp_path / "two"), "--devices", "2", "--strategy", "ddp"], tmp_path)
    plain = (tmp_path / "plain" / "predictions.tsv").read_text()
    assert (tmp_path / "one" / "predictions.tsv").read_text() == plain
    assert (tmp_path / "two" / "predictions.tsv").read_text() == plain
