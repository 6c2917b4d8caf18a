#!/bin/bash
# The ablation study behind docs/RESULTS.md (issue #7): 4 variants x 3 seeds, one recipe, then the report.
#
#   scripts/ablations.sh [RUNS=runs/ablations]
#
# Recipe (the same for every run): from scratch, ChEBI-20 validation split minus the 10 % held out
# (split seed 0), retrieval off and no copy head (so the caption depends on the graph tokens alone),
# 2 epochs (370 steps of 16), AdamW lr 1e-3, 50 warm-up steps then cosine, one CPU thread per run,
# two runs at a time on the 2-core machine. Scored on the full ChEBI-20 test split with greedy
# decoding and 3-gram blocking. Then traces of every run on the test molecules and the report.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-runs/ablations}
HSANET=${HSANET:-.venv/bin/hsanet}
mkdir -p "$RUNS"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1

worker() {
  for job in "$@"; do
    v=${job%-s*}; s=${job##*-s}; out=$RUNS/$v-s$s
    [ -f "$out/train_result.json" ] || $HSANET train --task caption --variant "$v" --seed "$s" --retrieval-k 0 \
        --epochs 2 --batch-size 16 --lr 1e-3 --warmup-steps 50 --threads 1 --max-minutes 30 --out "$out" > "$out.train.log" 2>&1
    [ -f "$out/eval/metrics.json" ] || $HSANET evaluate --checkpoint "$out/best" --split test --batch-size 128 \
        --no-repeat-ngram 3 --out "$out/eval" > "$out.eval.log" 2>&1
    echo "$(date +%T) done $job"
  done
}
worker full-s0 mamba-s0 full-s1 mamba-s1 full-s2 mamba-s2 &
worker attn-s0 nosaf-s0 attn-s1 nosaf-s1 attn-s2 nosaf-s2 &
wait

[ -f runs/retrieval/metrics.json ] || $HSANET baseline retrieval --split test --out runs/retrieval
$HSANET report --runs "$RUNS" --collect --baseline runs/retrieval/metrics.json --recipe docs/results/recipe.md

# the app's compare view: the seed-0 checkpoint of every variant, fp16, without the retrieval index
# (retrieval is off in these runs)
.venv/bin/python - "$RUNS" <<'PY'
import sys
from hsanet import HSANet
for v in ("attn", "mamba", "nosaf", "full"):
    m = HSANet.from_pretrained(f"{sys.argv[1]}/{v}-s0/best", device="cpu")
    m.retrieval = None
    m.meta["ablation"] = {"variant": v, "seed": 0, "recipe": "docs/results/recipe.md", "report": "docs/RESULTS.md"}
    m.save_pretrained(f"assets/ablations/{v}", fp16=True)
PY
du -sh assets/ablations
