"""``hsanet evaluate`` and ``hsanet baseline``: caption scores with the MolT5 protocol.

    hsanet evaluate --checkpoint DIR --split test --out OUTDIR   -> OUTDIR/predictions.tsv, metrics.json
    hsanet evaluate --predictions FILE                           -> one JSON object on stdout
    hsanet baseline retrieval --split test --out OUTDIR          -> nearest-neighbour captions, scored

The metrics (hsanet/metrics/captions.py) follow MolT5's evaluation script: SciBERT word-pieces,
nltk BLEU-2/4 and METEOR, rouge-score ROUGE-1/2/L. Every row of the split gets a caption: molecules
above the interactive atom limit are still captioned here (the limit guards the app, not the score).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

EVAL_MAX_ATOMS = 10_000


def write_run(out: Path, smiles, refs, outs, metrics: dict) -> None:
    from hsanet.metrics.captions import write_predictions

    out.mkdir(parents=True, exist_ok=True)
    write_predictions(out / "predictions.tsv", smiles, refs, outs)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")


def evaluate_checkpoint(checkpoint, split: str = "test", data_dir=None, out=None, num_beams: int = 1,
                        batch_size: int = 32, limit: int = 0, no_repeat_ngram_size: int | None = None,
                        smiles=None, references=None, devices: int | str = 0, strategy: str = "auto",
                        num_nodes: int = 1, rerank: bool | None = None, retrieval_k: int | None = None,
                        copy: bool | None = None, rerank_neighbours: int | None = None) -> dict | None:
    """Caption a ChEBI-20 split (or given SMILES/references) and score it.

    ``retrieval_k`` and ``copy`` switch the model's retrieval augmentation (neighbour captions in
    the prompt; 0 = none) and copy head at inference only: an ablation of a model trained with them.
    ``rerank_neighbours`` sets how many neighbours' captions reranking considers.

    With ``devices`` (>= 1) the captions are generated under Lightning's predict loop on that many
    devices (``hsanet.inference.predict``); then only rank 0 scores and returns the metrics (others: None).
    """
    from hsanet.featurizers import parse
    from hsanet.data.chebi import load_chebi
    from hsanet.metrics.captions import caption_metrics
    from hsanet.models.hsanet import HSANet

    if smiles is None:
        data = load_chebi(split, data_dir)
        smiles, references = data.smiles, data.descriptions
    if limit:
        smiles, references = smiles[:limit], references[:limit]
    model = HSANet.from_pretrained(checkpoint)
    model.set_inference_switches(retrieval_k=retrieval_k, copy=copy, rerank_neighbours=rerank_neighbours)
    mols = [parse(s, max_atoms=EVAL_MAX_ATOMS) for s in smiles]
    start = time.time()
    # long prompts first keeps batches of similar length
    order = sorted(range(len(mols)), key=lambda i: -len(mols[i].smiles))

    def caption(chunk):
        return model.generate_captions(chunk, num_beams=num_beams, no_repeat_ngram_size=no_repeat_ngram_size,
                                       batch_size=batch_size, rerank=rerank)

    ordered = [mols[i] for i in order]
    if devices:                     # Lightning's predict loop; only rank 0 gets the captions back
        from hsanet.inference.predict import predict_rows

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
                    "rerank_neighbours": model.config.rerank_neighbours or model.config.retrieval_k,
                    "copy_mechanism": model.copy_active,
                    "generation_seconds": round(gen_seconds, 1)})
    if out:
        write_run(Path(out), smiles, references, outs, metrics)
    return metrics
