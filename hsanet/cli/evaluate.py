"""``hsanet evaluate`` and ``hsanet baseline``: caption scores with the MolT5 protocol
(:mod:`hsanet.evaluation.evaluate`).

    hsanet evaluate --checkpoint DIR --split test --out OUTDIR   -> OUTDIR/predictions.tsv, metrics.json
    hsanet evaluate --predictions FILE                           -> one JSON object on stdout
    hsanet evaluate --split validation --tune-rerank --out OUTDIR -> OUTDIR/rerank_grid.json (reranking weights)
    hsanet baseline retrieval --split test --out OUTDIR          -> nearest-neighbour captions, scored
    hsanet baseline retrieval --consensus 5 ...                  -> the neighbours' consensus caption instead
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hsanet.cli.errors import UsageError, check_at_least, check_strategy
from hsanet.evaluation.evaluate import evaluate_checkpoint, write_run


def cmd_evaluate(args) -> int:
    from hsanet.metrics.captions import score_predictions

    check_at_least(("--beams", args.beams, 1), ("--batch-size", args.batch_size, 1), ("--limit", args.limit, 0),
                   ("--retrieval-k", args.retrieval_k, 0), ("--no-repeat-ngram", args.no_repeat_ngram, 0),
                   ("--devices", args.devices, 0), ("--num-nodes", args.num_nodes, 1),
                   ("--rerank-neighbours", args.rerank_neighbours, 1))
    check_strategy(args.strategy)
    if args.tune_rerank:
        return _tune_rerank(args)

    if args.predictions:
        try:
            result = score_predictions(args.predictions, args.data_dir)
        except ValueError as exc:          # missing columns, unequal lengths, an empty file
            raise UsageError(str(exc)) from None
    else:
        from hsanet.paths import DEFAULT_CHECKPOINT

        result = evaluate_checkpoint(args.checkpoint or DEFAULT_CHECKPOINT, args.split, args.data_dir, args.out,
                                     args.beams, args.batch_size, args.limit, args.no_repeat_ngram,
                                     devices=args.devices, strategy=args.strategy, num_nodes=args.num_nodes,
                                     rerank=args.rerank, retrieval_k=args.retrieval_k, copy=args.copy,
                                     rerank_neighbours=args.rerank_neighbours)
        if result is None:              # another rank of a --devices run: rank 0 reports
            return 0
    print(json.dumps(result, indent=2))
    return 0


def _tune_rerank(args) -> int:
    """--tune-rerank: the reranking weights chosen on a split's candidates (hsanet.evaluation.rerank)."""
    if args.predictions:
        raise UsageError("--tune-rerank captions molecules with a model: give --checkpoint, not --predictions")
    from hsanet.data.chebi import load_chebi
    from hsanet.evaluation import rerank
    from hsanet.evaluation.evaluate import EVAL_MAX_ATOMS
    from hsanet.models.hsanet import HSANet
    from hsanet.paths import DEFAULT_CHECKPOINT

    saved = Path(args.out) / "candidates.jsonl" if args.out else None
    if saved is not None and saved.is_file():           # the model's candidates of an earlier run: re-grid only
        rows = [json.loads(line) for line in saved.read_text(encoding="utf-8").splitlines() if line.strip()]
        print(f"reusing the candidates in {saved} (delete it to caption again)", file=sys.stderr)
    else:
        model = HSANet.from_pretrained(args.checkpoint or DEFAULT_CHECKPOINT)
        if not model.config.retrieval_k or model.retrieval is None:
            raise UsageError("--tune-rerank needs a retrieval-augmented model (retrieval_k > 0 with its pool)")
        data = load_chebi(args.split, args.data_dir)
        if args.limit:
            data = data.head(args.limit)
        rows = rerank.collect(model, data.smiles, data.descriptions,
                              neighbours=args.rerank_neighbours or max(rerank.NEIGHBOURS),
                              batch_size=args.batch_size, max_atoms=EVAL_MAX_ATOMS)
    result = rerank.grid(rows, args.data_dir)
    result.update({"split": args.split, "checkpoint": str(args.checkpoint or DEFAULT_CHECKPOINT)})
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "rerank_grid.json").write_text(json.dumps(result, indent=1) + "\n")
        with open(out / "candidates.jsonl", "w", encoding="utf-8") as f:     # to re-grid without the model
            f.writelines(json.dumps(r) + "\n" for r in rows)
    print(json.dumps({k: result[k] for k in ("n", "best", "scores")}, indent=2))
    return 0


def cmd_baseline(args) -> int:
    check_at_least(("--limit", args.limit, 0), ("--consensus", args.consensus, 0),
                   ("--own-similarity", args.own_similarity, 0))
    from hsanet.data.chebi import load_chebi
    from hsanet.metrics.captions import caption_metrics
    from hsanet.retrieval import retrieval_baseline

    pool = load_chebi(args.pool, args.data_dir)
    target = load_chebi(args.split, args.data_dir)
    if args.limit:
        target = target.head(args.limit)
    preds, sims = retrieval_baseline(pool.smiles, pool.descriptions, target.smiles, with_similarity=True,
                                     consensus=args.consensus, own_similarity=args.own_similarity)
    metrics = caption_metrics(target.descriptions, preds, args.data_dir)
    how = ("top-1" if args.consensus <= 1 else
           f"consensus of the top {args.consensus}, own-similarity weight {args.own_similarity:g}")
    metrics.update({"baseline": f"retrieval (Morgan r=2, 2048 bits, Tanimoto, {how})", "pool": args.pool,
                    "split": args.split, "limit": args.limit})
    if args.versus:
        metrics["versus"] = _versus(args.versus, target, preds, sims, args.data_dir)
    if args.out:
        write_run(Path(args.out), target.smiles, target.descriptions, preds, metrics)
    print(json.dumps(metrics, indent=2))
    return 0


def _versus(path, target, baseline: list[str], sims: list[float], data_dir) -> dict:
    """Head to head of a predictions TSV against the baseline on the same split, molecule by
    molecule; rows are matched by SMILES (in any order, as MolT5's published files are)."""
    from hsanet.metrics.captions import head_to_head, outputs_for

    try:
        outs, missing = outputs_for(path, target.smiles)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if missing:
        raise UsageError(f"{path} lacks {missing} of the {len(target.smiles)} molecules of the {target.name} split "
                         "(rows are matched by SMILES); write it with hsanet evaluate --split ... --out")
    result = head_to_head(target.descriptions, outs, baseline, sims, data_dir)
    result["predictions"] = str(path)
    return result


def _device_flags(p) -> None:
    p.add_argument("--devices", type=int, default=0, help="run under Lightning's predict loop on N devices/processes "
                   "(0 = plain loop in this process, the default)")
    p.add_argument("--strategy", default="auto", help="Lightning strategy with --devices (auto: ddp when N > 1)")
    p.add_argument("--num-nodes", dest="num_nodes", type=int, default=1, help="machines with --devices")


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="caption a ChEBI-20 split and score it (MolT5 protocol), or re-score a TSV")
    p.add_argument("--checkpoint", help="model folder (default: the embedded model)")
    p.add_argument("--split", default="test", choices=["test", "validation", "train"])
    p.add_argument("--predictions", help="re-score a predictions TSV (SMILES, ground truth, output)")
    p.add_argument("--out", help="folder for predictions.tsv and metrics.json")
    p.add_argument("--data-dir", dest="data_dir")
    p.add_argument("--beams", type=int, default=1)
    p.add_argument("--batch-size", dest="batch_size", type=int, default=32)
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--no-repeat-ngram", dest="no_repeat_ngram", type=int, default=None,
                   help="block repeated n-grams (default: the checkpoint's decoding setting)")
    p.add_argument("--rerank", action=argparse.BooleanOptionalAction, default=None,
                   help="return the likeliest of the generated caption and the neighbours' captions "
                        "(default: the checkpoint's decoding setting)")
    p.add_argument("--retrieval-k", dest="retrieval_k", type=int, default=None,
                   help="neighbour captions in the prompt at inference (0 = off; default: the checkpoint's)")
    p.add_argument("--rerank-neighbours", dest="rerank_neighbours", type=int, default=None,
                   help="with --rerank: the captions of the N nearest training molecules are candidates "
                        "(default: the checkpoint's, else the neighbours in the prompt)")
    p.add_argument("--copy", action=argparse.BooleanOptionalAction, default=None,
                   help="--no-copy switches the copy head off at inference (default: as trained)")
    p.add_argument("--tune-rerank", dest="tune_rerank", action="store_true",
                   help="choose the reranking weights (log-likelihood, consensus, similarity) on this split: "
                        "candidates from --rerank-neighbours (default 5) neighbours, OUT/rerank_grid.json")
    _device_flags(p)
    p.set_defaults(func=cmd_evaluate)

    b = sub.add_parser("baseline", help="reference baselines")
    b.add_argument("kind", choices=["retrieval"])
    b.add_argument("--pool", default="train", choices=["train", "validation"],
                   help="split whose captions are retrieved: the training data (default train, the standard protocol)")
    b.add_argument("--split", default="test", choices=["test", "validation", "train"])
    b.add_argument("--out")
    b.add_argument("--limit", type=int, default=0, help="only the first N molecules of --split (0 = all)")
    b.add_argument("--versus", metavar="PREDICTIONS_TSV",
                   help="also compare a model's predictions (hsanet evaluate --out) with the baseline molecule by "
                        "molecule: win/tie/loss on sentence BLEU-4, by the top neighbour's similarity")
    b.add_argument("--consensus", type=int, default=0, metavar="K",
                   help="pick among the K nearest training molecules' captions the one that agrees best with the "
                        "others (similarity-weighted sentence BLEU; Devlin et al. 2015); 0 or 1 = top-1")
    b.add_argument("--own-similarity", dest="own_similarity", type=float, default=8.0,
                   help="with --consensus: weight of a caption's own Tanimoto similarity in its score")
    b.add_argument("--data-dir", dest="data_dir")
    b.set_defaults(func=cmd_baseline)
