#!/bin/bash
# The embedded default (assets/hsanet-default), step by step; the model card quotes each step's output.
#
#   scripts/train_default.sh STAGE [RUNS=runs]
#
# Stages (each reads what the one before wrote; run them in this order):
#   train     caption model on the ChEBI-20 train split, best weights by validation loss (500 molecules)
#             (a sitting of at most 130 minutes; continue one with RESUME=runs/default/last.ckpt, or
#             a later session from the committed weights with INIT=assets/hsanet-default, LR=5e-4)
#   pool      (a killed sitting only) the training split attached as the retrieval pool
#   select    decoding chosen on the first 500 validation molecules: greedy / 3 beams, reranking on / off,
#             reranking over the captions of the 3 or 5 nearest training molecules; and the copy head or
#             retrieval switched off at inference (ablations of the trained model); then the reranking
#             weights (log-likelihood, consensus, similarity) on the whole validation split, and the
#             no-model consensus retrieval baseline
#   ship      weights into assets/hsanet-default (fp16 storage, loaded as fp32) with the tuned reranking
#             weights; RERANK_NEIGHBOURS=N overrides the reranking pool
#   props     property heads on the frozen encoder: BBBP, BACE, ClinTox, scaffold split seeds 0, 1, 2
#   test      the shipped model on the full ChEBI-20 test split, the retrieval baseline of the same
#             protocol (train pool), the head-to-head per molecule, and the no-model consensus baseline
#   reference the reference set behind the app's map (test split; captions from the test stage)
set -euo pipefail
cd "$(dirname "$0")/.."
STAGE=${1:?stage: train, pool, select, props, ship, test or reference}
RUNS=${2:-runs}
HSANET=${HSANET:-.venv/bin/hsanet}
PY=${PY:-.venv/bin/python}
export PYTHONUNBUFFERED=1
mkdir -p "$RUNS"

case "$STAGE" in
  train)
    extra=()
    [ -n "${RESUME:-}" ] && extra+=(--resume "$RESUME")
    [ -n "${INIT:-}" ] && extra+=(--init "$INIT")
    [ -n "${LR:-}" ] && extra+=(--lr "$LR")
    $HSANET train --task caption --config configs/default.yaml --out "$RUNS/default" \
      --max-minutes "${MINUTES:-130}" "${extra[@]}"
    ;;
  pool)
    # only for a sitting that was killed (touch OUT/STOP ends one cleanly, with the pool attached):
    # the saved model retrieves from the whole training split, as train would have attached it
    $PY - "$RUNS/default/best" <<'EOF'
import sys
from hsanet.data.chebi import load_chebi
from hsanet.models.hsanet import HSANet
from hsanet.training.caption import attach_training_pool

folder = sys.argv[1]
model = HSANet.from_pretrained(folder, device="cpu")
if model.config.retrieval_k and model.retrieval is None:
    attach_training_pool(model, load_chebi("train")).save_pretrained(folder)
print(f"{folder}: retrieval pool {model.meta.get('retrieval_pool', 'none')}")
EOF
    ;;
  select)
    for dec in "greedy:--beams 1 --rerank" "greedy-norerank:--beams 1 --no-rerank" "beam3:--beams 3 --rerank" \
               "no-copy:--beams 1 --no-rerank --no-copy" "no-retrieval:--beams 1 --no-rerank --retrieval-k 0" \
               "rerank3:--beams 1 --rerank --rerank-neighbours 3" "rerank5:--beams 1 --rerank --rerank-neighbours 5"; do
      name=${dec%%:*}; flags=${dec#*:}
      # shellcheck disable=SC2086
      [ -f "$RUNS/select/$name/metrics.json" ] || $HSANET evaluate --checkpoint "$RUNS/default/best" \
        --split validation --limit 500 $flags --out "$RUNS/select/$name" > /dev/null
      echo "$name: $(tr -d '\n ' < "$RUNS/select/$name/metrics.json")"
    done
    [ -f "$RUNS/select/retrieval/metrics.json" ] || $HSANET baseline retrieval --split validation --limit 500 \
      --out "$RUNS/select/retrieval" > /dev/null
    echo "retrieval: $(tr -d '\n ' < "$RUNS/select/retrieval/metrics.json")"
    # the reranking weights (log-likelihood, consensus with the neighbours' captions, own similarity),
    # chosen on the whole validation split; ship applies the best setting
    [ -f "$RUNS/select/tune/rerank_grid.json" ] || $HSANET evaluate --checkpoint "$RUNS/default/best" \
      --split validation --tune-rerank --rerank-neighbours 5 --out "$RUNS/select/tune" > /dev/null
    $PY -c 'import json,sys; r=json.load(open(sys.argv[1])); print("tuned:", json.dumps(r["best"]))' \
      "$RUNS/select/tune/rerank_grid.json"
    [ -f "$RUNS/select/consensus/metrics.json" ] || $HSANET baseline retrieval --split validation --consensus 5 \
      --out "$RUNS/select/consensus" > /dev/null
    echo "consensus retrieval: $(tr -d '\n ' < "$RUNS/select/consensus/metrics.json")"
    ;;
  props)
    $HSANET train --task property --init "$RUNS/default/best" --seeds 1 --split-seeds 0,1,2 --out "$RUNS/props"
    ;;
  ship)
    $PY - "$RUNS/props" assets/hsanet-default "$RUNS/select/tune/rerank_grid.json" "${RERANK_NEIGHBOURS:-}" <<'EOF'
import json, shutil, sys
from pathlib import Path
from hsanet.models.hsanet import HSANet

src, dst, tuned = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
model = HSANet.from_pretrained(src, device="cpu")
if tuned.is_file():             # the reranking weights chosen on validation (select)
    best = json.loads(tuned.read_text())["best"]
    model.config.rerank_neighbours = int(best["neighbours"])
    model.config.rerank_likelihood = float(best["likelihood"])
    model.config.rerank_consensus = float(best["consensus"])
    model.config.rerank_similarity = float(best["similarity"])
    print(f"reranking from {tuned}: {best}")
if len(sys.argv) > 4 and sys.argv[4]:
    model.config.rerank_neighbours = int(sys.argv[4])
card = dst / "README.md"
keep = card.read_text() if card.exists() else None
shutil.rmtree(dst, ignore_errors=True)
model.save_pretrained(dst, fp16=True)
if keep is not None:
    card.write_text(keep)
print(f"saved {src} -> {dst} (fp16 storage)")
EOF
    ;;
  test)
    $HSANET evaluate --split test --out "$RUNS/eval_test" > /dev/null
    cat "$RUNS/eval_test/metrics.json"
    $HSANET baseline retrieval --split test --out "$RUNS/retrieval_test" \
      --versus "$RUNS/eval_test/predictions.tsv" > /dev/null
    cat "$RUNS/retrieval_test/metrics.json"
    $HSANET baseline retrieval --split test --consensus 5 --out "$RUNS/consensus_test" > /dev/null
    cat "$RUNS/consensus_test/metrics.json"
    ;;
  reference)
    $HSANET reference build --captions-from "$RUNS/eval_test/predictions.tsv"
    ;;
  *)
    echo "unknown stage $STAGE (train, pool, select, props, ship, test, reference)" >&2; exit 2 ;;
esac
