"""``hsanet evaluate`` and ``hsanet baseline``: caption scores with the MolT5 protocol.

    hsanet evaluate --checkpoint DIR --split test --out OUTDIR   -> OUTDIR/predictions.tsv, metrics.json
    hsanet evaluate --predictions FILE                           -> one JSON object on stdout
    hsanet baseline retrieval --split test --out OUTDIR          -> nearest-neighbour captions, scored

The metrics (hsanet/metrics/captions.py) follow MolT5's evaluation script: SciBERT word-pieces,
nltk BLEU-2/4 and METEOR, rouge-score ROUGE-1/2/L. Every row of the split gets a caption: molecules
above the interactive atom limit are still captioned here (the limit guards the app, not the score).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

EVAL_MAX_ATOMS = 10_000


def _write(out: Path, smiles, refs, outs, metrics: dict) -> None:
    from .metrics.captions import write_predictions

    out.mkdir(parents=True, exist_ok=True)
    write_predictions(out / "predictions.tsv", smiles, refs, outs)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")


def evaluate_checkpoint(checkpoint, split: str = "test", data_dir=None, out=None, num_beams: int = 1,
                        batch_size: int = 32, limit: int = 0, no_repeat_ngram_size: int | None = None,
                        smiles=None, references=None, devices: int | str = 0, strategy: str = "auto",
                        num_nodes: int = 1, rerank: bool | None = None, retrieval_k: int | None = None,
                        copy: bool | None = None) -> dict | None:
    """Caption a ChEBI-20 split (or given SMILES/references) and score it.

    ``retrieval_k`` and ``copy`` switch the model's retrieval augmentation (neighbour captions in
    the prompt; 0 = none) and copy head at inference only: an ablation of a model trained with them.

    With ``devices`` (>= 1) the captions are generated under Lightning's predict loop on that many
    devices (``hsanet.predict``); then only rank 0 scores and returns the metrics (others: None).
    """
    from .chem import parse
    from .data.chebi import load_chebi
    from .metrics.captions import caption_metrics
    from .model import HSANet

    if smiles is None:
        data = load_chebi(split, data_dir)
        smiles, references = data.smiles, data.descriptions
    if limit:
        smiles, references = smiles[:limit], references[:limit]
    model = HSANet.from_pretrained(checkpoint)
    model.set_inference_switches(retrieval_k=retrieval_k, copy=copy)
    mols = [parse(s, max_atoms=EVAL_MAX_ATOMS) for s in smiles]
    start = time.time()
    # long prompts first keeps batches of similar length
    order = sorted(range(len(mols)), key=lambda i: -len(mols[i].smiles))

    def caption(chunk):
        return model.generate_captions(chunk, num_beams=num_beams, no_repeat_ngram_size=no_repeat_ngram_size,
                                       batch_size=batch_size, rerank=rerank)

    ordered = [mols[i] for i in order]
    if devices:                     # Lightning's predict loop; only rank 0 gets the captions back
        from .predict import predict_rows

        got = predict_rows(model, ordered, caption, batch_size=batch_size, devices=devices, strategy=strategy,
                           num_nodes=num_nodes)
        if got is None:
            return None
    else:
        from tqdm.auto import tqdm

        got = []
        with tqdm(total=len(ordered), desc="captioning", unit="mol", file=sys.stderr,
                  mininterval=2.0) as bar:            # progress on stderr, results on stdout (| jq works)
            for b in range(0, len(ordered), batch_size):
                got += caption(ordered[b:b + batch_size])
                bar.update(len(got) - bar.n)
    outs = [""] * len(mols)
    for i, c in zip(order, got):
        outs[i] = c
    gen_seconds = time.time() - start
    metrics = caption_metrics(references, outs, data_dir)
    metrics.update({"split": split, "checkpoint": str(checkpoint), "num_beams": num_beams,
                    "no_repeat_ngram_size": (model.config.no_repeat_ngram_size if no_repeat_ngram_size is None
                                             else no_repeat_ngram_size),
                    "rerank": model.config.rerank if rerank is None else rerank,
                    "retrieval_k": model.config.retrieval_k,
                    "copy_mechanism": model.copy_active,
                    "generation_seconds": round(gen_seconds, 1)})
    if out:
        _write(Path(out), smiles, references, outs, metrics)
    return metrics


def cmd_evaluate(args) -> int:
    from .cli import UsageError, check_at_least
    from .metrics.captions import score_predictions

    check_at_least(("--beams", args.beams, 1), ("--batch-size", args.batch_size, 1), ("--limit", args.limit, 0),
                   ("--retrieval-k", args.retrieval_k, 0), ("--no-repeat-ngram", args.no_repeat_ngram, 0))

    if args.predictions:
        try:
            result = score_predictions(args.predictions, args.data_dir)
        except ValueError as exc:          # missing columns, unequal lengths, an empty file
            raise UsageError(str(exc)) from None
    else:
        from .paths import DEFAULT_CHECKPOINT

        result = evaluate_checkpoint(args.checkpoint or DEFAULT_CHECKPOINT, args.split, args.data_dir, args.out,
                                     args.beams, args.batch_size, args.limit, args.no_repeat_ngram,
                                     devices=args.devices, strategy=args.strategy, num_nodes=args.num_nodes,
                                     rerank=args.rerank, retrieval_k=args.retrieval_k, copy=args.copy)
        if result is None:              # another rank of a --devices run: rank 0 reports
            return 0
    print(json.dumps(result, indent=2))
    return 0


def cmd_baseline(args) -> int:
    from .data.chebi import load_chebi
    from .metrics.captions import caption_metrics
    from .retrieval import retrieval_baseline

    pool = load_chebi(args.pool, args.data_dir)
    target = load_chebi(args.split, args.data_dir)
    if args.limit:
        target = target.head(args.limit)
    preds, sims = retrieval_baseline(pool.smiles, pool.descriptions, target.smiles, with_similarity=True)
    metrics = caption_metrics(target.descriptions, preds, args.data_dir)
    metrics.update({"baseline": "retrieval (Morgan r=2, 2048 bits, Tanimoto, top-1)", "pool": args.pool,
                    "split": args.split, "limit": args.limit})
    if args.versus:
        metrics["versus"] = _versus(args.versus, target, preds, sims, args.data_dir)
    if args.out:
        _write(Path(args.out), target.smiles, target.descriptions, preds, metrics)
    print(json.dumps(metrics, indent=2))
    return 0


def _versus(path, target, baseline: list[str], sims: list[float], data_dir) -> dict:
    """Head to head of a predictions TSV against the baseline on the same split, molecule by
    molecule; rows are matched by SMILES (in any order, as MolT5's published files are)."""
    from .cli import UsageError
    from .metrics.captions import head_to_head, outputs_for

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
    p.add_argument("--copy", action=argparse.BooleanOptionalAction, default=None,
                   help="--no-copy switches the copy head off at inference (default: as trained)")
    _device_flags(p)
    p.set_defaults(func=cmd_evaluate)

    b = sub.add_parser("baseline", help="reference baselines")
    b.add_argument("kind", choices=["retrieval"])
    b.add_argument("--pool", default="train", choices=["train", "validation"],
                   help="split whose captions are retrieved: the training data (default train, the standard protocol)")
    b.add_argument("--split", default="test")
    b.add_argument("--out")
    b.add_argument("--limit", type=int, default=0, help="only the first N molecules of --split (0 = all)")
    b.add_argument("--versus", metavar="PREDICTIONS_TSV",
                   help="also compare a model's predictions (hsanet evaluate --out) with the baseline molecule by "
                        "molecule: win/tie/loss on sentence BLEU-4, by the top neighbour's similarity")
    b.add_argument("--data-dir", dest="data_dir")
    b.set_defaults(func=cmd_baseline)
