#!/usr/bin/env bash
# GPU check, one prepared run on a machine with an NVIDIA GPU (about 10 minutes):
#   scripts/gpu_check.sh OUT_DIR
# 1. installs requirements-gpu.txt (mamba-ssm's fused selective-scan kernel, causal-conv1d) into
#    the project's virtual environment (./run setup makes it);
# 2. runs the scan equivalence tests, which compare the PyTorch scans with mamba-ssm's kernel;
# 3. runs `hsanet bench --sections analysis,train,embed,gpu`: the CPU rows, then the gpu section
#    (analysis, embedding and scaling in float32 and bf16, caption training in bf16-mixed, and the
#    PyTorch scans against mamba-ssm's kernel) on the GPU;
# 4. writes everything into OUT_DIR: pip.log, nvidia-smi.txt, scan-tests.txt, bench.json, bench.txt.
# Each step's failure is recorded and the next step still runs; the exit status is the first failure.
set -uo pipefail
OUT="${1:?usage: scripts/gpu_check.sh OUT_DIR}"
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
status=0
note() { printf '[gpu_check] %s\n' "$*" | tee -a "$OUT/steps.txt" >&2; }
fail() { note "FAILED: $*"; [ "$status" -eq 0 ] && status=1; }

nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || fail "nvidia-smi"
./run setup > "$OUT/setup.log" 2>&1 || fail "./run setup"
PY=.venv/bin/python
# requirements.txt pins the CPU build of torch; the GPU build comes from the CUDA index
note "installing the CUDA build of torch and requirements-gpu.txt"
$PY -m pip install -q "torch==2.13.0" --index-url https://download.pytorch.org/whl/cu128 > "$OUT/pip.log" 2>&1 \
  || note "CUDA torch wheel not installed (offline index?); using what is there"
$PY -m pip install -q --no-build-isolation -r requirements-gpu.txt >> "$OUT/pip.log" 2>&1 || fail "pip install requirements-gpu.txt"
$PY - > "$OUT/torch.txt" 2>&1 <<'PY' || fail "torch sees no GPU"
import torch
print(torch.__version__, torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
from hsanet.nn.selective_scan import kernel_available, backend_for
print("mamba-ssm kernel:", kernel_available(), backend_for("cuda"))
assert torch.cuda.is_available()
PY
note "scan equivalence tests (PyTorch scans vs mamba-ssm's kernel)"
$PY -m pytest -q -p no:cacheprovider tests/unit/test_scan.py -rs > "$OUT/scan-tests.txt" 2>&1 || fail "scan tests"
grep -q "SKIPPED.*mamba-ssm" "$OUT/scan-tests.txt" && fail "the mamba-ssm kernel test was skipped"
note "hsanet bench --sections analysis,train,embed,gpu"
timeout 420 .venv/bin/hsanet bench --sections analysis,train,embed,gpu --runs 10 --json "$OUT/bench.json" \
  > "$OUT/bench.txt" 2>&1 || fail "hsanet bench"
note "done, status $status"
exit $status
