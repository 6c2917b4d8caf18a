"""Caption training on ChEBI-20 (the paper's molecule-captioning task).

The 26,407-row ChEBI-20 train split is not available offline, so the model trains on the 3,301-row
validation split with ``holdout`` (10 %) of it held out for model selection (best held-out loss,
early stopping). The test split is never read here: it is for the final score only
(``hsanet evaluate``). With retrieval on, training prompts hold the captions of each molecule's
nearest training neighbours (leave-one-out); the saved model retrieves from the whole training file.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from ..config import HSANetConfig
from ..data.chebi import holdout_split, load_chebi
from ..lm import TextTokenizer
from ..model import HSANet
from ..retrieval import FingerprintIndex
from .data import LengthGroupedSampler, build_dataset, collate, parse_rows


def _trainer_kwargs(train: dict, out: Path) -> dict:
    import lightning as L
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

    cuda = torch.cuda.is_available()
    precision = train["precision"] or ("bf16-mixed" if cuda else "32-true")
    devices = torch.cuda.device_count() if cuda else 1
    return dict(
        accelerator="gpu" if cuda else "cpu", devices=devices,
        strategy="ddp" if devices > 1 else "auto", precision=precision,
        max_epochs=train["epochs"], max_time={"minutes": float(train["max_minutes"])},
        gradient_clip_val=1.0, log_every_n_steps=10, check_val_every_n_epoch=train["val_every"],
        num_sanity_val_steps=0, default_root_dir=str(out), enable_model_summary=False,
        callbacks=[EarlyStopping("val_loss", patience=train["patience"]),
                   ModelCheckpoint(dirpath=str(out / "lightning"), save_last=True, save_top_k=0)],
        logger=L.pytorch.loggers.CSVLogger(str(out), name="logs"),
    ), L


def train_caption(train: dict, model_over: dict) -> dict:
    start = time.time()
    if train["threads"]:
        torch.set_num_threads(int(train["threads"]))
    torch.manual_seed(train["seed"])
    out = Path(train["out"])
    out.mkdir(parents=True, exist_ok=True)
    data_dir = train["data_dir"] or None

    split = load_chebi("validation", data_dir)
    smiles, captions = split.smiles, split.descriptions
    if train["limit"]:
        smiles, captions = smiles[: train["limit"]], captions[: train["limit"]]
    init = None
    if train["init"]:
        init = HSANet.from_pretrained(train["init"], device="cpu")
        config = init.config
        for key, value in model_over.items():
            setattr(config, key, value)
        config.validate()
    else:
        config = HSANetConfig(**model_over)
    mols, caps, skipped = parse_rows(smiles, captions, config.max_atoms)
    for row, why in skipped:
        print(f"skipped row {row}: {why}")
    tr_idx, ho_idx = holdout_split(len(mols), train["holdout"], seed=train["split_seed"])
    tr_mols, tr_caps = [mols[i] for i in tr_idx], [caps[i] for i in tr_idx]
    ho_mols, ho_caps = [mols[i] for i in ho_idx], [caps[i] for i in ho_idx]
    print(f"ChEBI-20 validation file: {len(smiles)} rows, {len(skipped)} skipped, "
          f"{len(tr_mols)} for training, {len(ho_mols)} held out for model selection")

    index = FingerprintIndex.build([m.smiles for m in tr_mols], tr_caps)
    if init is not None:            # continue from a checkpoint (its tokenizer), adding a copy head if asked
        model = init
        model.retrieval = index
        if config.copy_mechanism and model.decoder.copy is None:
            from ..lm.decoder import CopyHead

            model.decoder.copy = CopyHead(model.decoder.lm.get_input_embeddings().embedding_dim)
        print(f"initialized from {train['init']}")
    else:
        tokenizer = TextTokenizer.train([m.smiles for m in tr_mols] + tr_caps, vocab_size=train["vocab_size"])
        model = HSANet(config, tokenizer, retrieval=index)
    if config.retrieval_k:
        tr_refs = [[index.captions[i] for i, _ in row] for row in
                   index.query_many([m.smiles for m in tr_mols], k=config.retrieval_k, exclude_self=True)]
        ho_refs = [[index.captions[i] for i, _ in row] for row in
                   index.query_many([m.smiles for m in ho_mols], k=config.retrieval_k)]
    else:
        tr_refs, ho_refs = [[] for _ in tr_mols], [[] for _ in ho_mols]
    tr_ds = build_dataset(model, tr_mols, tr_caps, tr_refs)
    ho_ds = build_dataset(model, ho_mols, ho_caps, ho_refs)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params / 1e6:.2f} M parameters, variant {config.variant}, retrieval_k {config.retrieval_k}")

    bs = train["batch_size"]
    tr_dl = torch.utils.data.DataLoader(tr_ds, batch_sampler=LengthGroupedSampler(tr_ds.lengths(), bs, seed=train["seed"]),
                                        collate_fn=collate)
    ho_dl = torch.utils.data.DataLoader(ho_ds, batch_sampler=LengthGroupedSampler(ho_ds.lengths(), 32, shuffle=False),
                                        collate_fn=collate)
    steps_per_epoch = len(tr_dl)
    from .module import CaptionModule, SaveBest

    kwargs, L = _trainer_kwargs(train, out)
    meta = {"task": "caption", "init": str(train["init"] or ""), "copy_mechanism": config.copy_mechanism, "data": "ChEBI-20 validation split (train part)", "n_train": len(tr_mols),
            "n_heldout": len(ho_mols), "seed": train["seed"], "variant": config.variant,
            "parameters": n_params, "recipe": {k: train[k] for k in ("batch_size", "lr", "warmup_steps",
                                                                    "weight_decay", "max_minutes", "epochs")}}
    kwargs["callbacks"].append(SaveBest(out / "best", meta=meta))
    module = CaptionModule(model, lr=train["lr"], weight_decay=train["weight_decay"],
                           warmup_steps=train["warmup_steps"], total_steps=steps_per_epoch * train["epochs"],
                           max_seconds=60.0 * float(train["max_minutes"]) * 0.97)
    # the cosine schedule ends with the epoch budget or, if sooner, with the time budget
    trainer = L.Trainer(**kwargs)
    trainer.fit(module, tr_dl, ho_dl, ckpt_path=train["resume"] or None)

    # the saved model retrieves from the whole training file (train part + held-out part)
    best = HSANet.from_pretrained(out / "best", device="cpu")
    best.retrieval = FingerprintIndex.build([m.smiles for m in mols], caps)
    best.meta["retrieval_pool"] = f"ChEBI-20 validation split, {len(mols)} molecules"
    best.meta["wall_seconds"] = round(time.time() - start, 1)
    best.save_pretrained(out / "best")
    result = {"out": str(out / "best"), "best_val_loss": best.meta.get("best_val_loss"),
              "epochs_run": trainer.current_epoch, "steps": trainer.global_step,
              "wall_seconds": best.meta["wall_seconds"], "parameters": n_params}
    (out / "train_result.json").write_text(json.dumps(result, indent=2) + "\n")
    return result
