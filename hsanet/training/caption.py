"""Caption training on ChEBI-20 (the paper's molecule-captioning task, Eq. 6 loss + SAF balance).

Protocol (the standard one of every published ChEBI-20 number): train on the train split, choose
everything (best weights, early stopping) by the loss on the validation split; the test split is
never read here (``hsanet evaluate``). The retrieval pool, for the prompts' neighbour captions and
for the saved model, is the training split; training prompts leave the molecule itself out. The
older setting (train on the validation split, select on a held-out part of it) stays reachable:
``--train-split validation --holdout 0.1``.

The engine (speed measured in docs/BENCHMARKS.md, ``hsanet bench --sections train``):
- precision: bf16 autocast where the CPU has bf16 units (AMX or AVX512-BF16) or on CUDA, float32
  elsewhere; ``--precision`` overrides;
- data prepared once and cached on disk (``training/cache.py``); length-grouped batches;
- both cores: torch's intra-op threads (or one process per core with ``--devices 2``);
- ``--max-minutes`` (or ``touch OUT/STOP``) ends the sitting cleanly with ``OUT/last.ckpt`` and
  ``OUT/best`` (the retrieval pool attached);
  ``--resume OUT/last.ckpt`` continues the same run (optimizer, schedule, data order);
  ``--init FOLDER`` starts from saved weights;
- several processes, GPUs or machines with Lightning's DDP (``--devices``, ``--num-nodes``,
  ``--strategy``): the global batch and every molecule's training noise stay the same.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch

from hsanet.config import ConfigError, HSANetConfig
from hsanet.data.chebi import chebi_path, holdout_split, read_chebi_file
from hsanet.lm import TextTokenizer
from hsanet.models.hsanet import HSANet
from hsanet.retrieval import FingerprintIndex
from hsanet.training import cache
from hsanet.training.data import CaptionDataset, LengthGroupedSampler, ResumableLoader, build_dataset, collate, parse_rows


def attach_training_pool(model: HSANet, split, index: FingerprintIndex | None = None) -> HSANet:
    """Make ``split`` (a ChebiSplit, the training data) the model's retrieval pool, as a trained
    model carries it: the molecules that parse within the atom limit, or a prebuilt ``index``."""
    if index is None:
        mols, caps, _ = parse_rows(split.smiles, split.descriptions, model.config.max_atoms)
        index = FingerprintIndex.build([m.smiles for m in mols], caps)
    model.retrieval = index
    model.meta["retrieval_pool"] = f"ChEBI-20 {split.name} split, {len(index)} molecules"
    return model


def cpu_has_bf16() -> bool:
    """True when this CPU has bf16 matrix or vector units (Intel AMX or AVX512-BF16)."""
    try:
        return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())
    except AttributeError:          # older torch: read the flags
        try:
            flags = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
        return "amx_bf16" in flags or "avx512_bf16" in flags


def default_precision(accelerator: str) -> str:
    if accelerator == "gpu":
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed" if cpu_has_bf16() else "32-true"


def resolve_devices(train: dict) -> tuple[str, int | str, str]:
    """(accelerator, devices, strategy) from the options: GPUs when present; on several devices DDP."""
    acc = train.get("accelerator") or "auto"
    if acc == "auto":
        acc = "gpu" if torch.cuda.is_available() else "cpu"
    devices = train.get("devices") or "auto"
    if devices == "auto":
        devices = torch.cuda.device_count() if acc == "gpu" else 1
    devices = int(devices)
    strategy = train.get("strategy") or "auto"
    if strategy == "auto" and (devices > 1 or int(train.get("num_nodes") or 1) > 1):
        strategy = "ddp"
    return acc, devices, strategy


def _trainer(train: dict, out: Path, callbacks: list, steps_per_epoch: int):
    import lightning as L
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

    from hsanet.training.module import SaveLast, StopAfter

    acc, devices, strategy = resolve_devices(train)
    precision = train["precision"] or default_precision(acc)
    val_every = int(train.get("val_every_steps") or 0)
    kwargs = dict(
        accelerator=acc, devices=devices, num_nodes=int(train.get("num_nodes") or 1), strategy=strategy,
        precision=precision, max_epochs=train["epochs"], max_steps=int(train.get("max_steps") or -1),
        accumulate_grad_batches=int(train.get("accumulate") or 1),
        gradient_clip_val=1.0, log_every_n_steps=10, num_sanity_val_steps=0, default_root_dir=str(out),
        enable_model_summary=False, use_distributed_sampler=False,
        logger=L.pytorch.loggers.CSVLogger(str(out), name="logs"),
        callbacks=[EarlyStopping("val_loss", patience=train["patience"], check_on_train_epoch_end=False),
                   StopAfter(train["max_minutes"], out / "STOP"), SaveLast(out / "last.ckpt"), *callbacks],
    )
    if val_every:
        acc = kwargs["accumulate_grad_batches"]                # Lightning counts micro-batches here
        kwargs["val_check_interval"] = min(val_every, steps_per_epoch) * acc
        kwargs["check_val_every_n_epoch"] = None if val_every < steps_per_epoch else 1
    else:
        kwargs["check_val_every_n_epoch"] = train["val_every"]
    every = int(train.get("ckpt_every_steps") or 0)
    if every:       # a periodic last.ckpt too, in case the process is killed
        kwargs["callbacks"].append(ModelCheckpoint(dirpath=str(out), filename="last", save_top_k=0,
                                                   save_last=False, every_n_train_steps=every,
                                                   enable_version_counter=False))
    # the best model is saved by SaveBest (a ModelCheckpoint among ``callbacks``): Lightning adds none
    return L.Trainer(**kwargs), precision


LM_KEYS = ("lm_type", "lm_path", "lm_gguf_file", "lora_rank", "lm_dim", "lm_layers", "lm_heads")


def _new_tokenizer(config: HSANetConfig, fit_rows, train: dict) -> TextTokenizer:
    """A pretrained LM's own tokenizer, or a BPE trained on the training SMILES and captions."""
    if config.lm_type == "local":
        from hsanet.lm.decoder import resolve_lm_path

        return TextTokenizer.from_hf_folder(resolve_lm_path(config.lm_path), config.lm_gguf_file)
    return TextTokenizer.train(list(fit_rows[0]) + list(fit_rows[1]), vocab_size=train["vocab_size"])


def _splits(train: dict):
    """(training split, selection split or None, their file paths): selection is None when both
    are the same file (the held-out setting)."""
    data_dir = train["data_dir"] or None
    tr_name, va_name = train.get("train_split") or "train", train.get("val_split") or "validation"
    tr_path = chebi_path(tr_name, data_dir)
    tr = read_chebi_file(tr_path, tr_name)
    if train["limit"]:
        tr.smiles, tr.descriptions = tr.smiles[: train["limit"]], tr.descriptions[: train["limit"]]
    if tr_name == va_name:
        return tr, None, tr_path, None
    va_path = chebi_path(va_name, data_dir)
    va = read_chebi_file(va_path, va_name)
    if train.get("val_limit"):
        va.smiles, va.descriptions = va.smiles[: train["val_limit"]], va.descriptions[: train["val_limit"]]
    return tr, va, tr_path, va_path


def prepare_dataset(model, train: dict, folder: Path, sig: dict, name: str, smiles, captions, pool_fn,
                    exclude_self: bool) -> tuple[CaptionDataset, list]:
    """Parse, featurize, retrieve and tokenize ``smiles``/``captions``, or read them from the cache.

    ``pool_fn(smiles, captions)`` gives the retrieval pool; for ``name == "fit"`` (the training
    set, its own pool) it is called with the molecules just parsed, otherwise without arguments."""
    key = cache.cache_key({**sig, "name": name, "exclude_self": exclude_self})
    hit = cache.load_dataset(folder, key) if not train.get("no_cache") else None
    if hit is not None:
        ds, extra = hit
        return ds, [tuple(s) for s in extra.get("skipped", [])]
    mols, caps, skipped = parse_rows(smiles, captions, model.config.max_atoms)
    k = model.config.retrieval_k
    if k:
        pool = pool_fn([m.smiles for m in mols], caps) if name == "fit" else pool_fn()
        hits = pool.query_many([m.smiles for m in mols], k=k, exclude_self=exclude_self)
        refs = [[pool.captions[i] for i, _ in row] for row in hits]
    else:
        refs = [[] for _ in mols]
    ds = build_dataset(model, mols, caps, refs)
    if not train.get("no_cache"):
        cache.save_dataset(ds, {"skipped": skipped}, folder, key)
    return ds, skipped


def train_caption(train: dict, model_over: dict, callbacks: list | None = None) -> dict:
    start = time.time()
    if train["threads"]:
        torch.set_num_threads(int(train["threads"]))
    else:
        _, devices, _ = resolve_devices(train)
        if devices > 1 and not torch.cuda.is_available():     # one process per core
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // devices))
    torch.manual_seed(train["seed"])
    out = Path(train["out"])
    out.mkdir(parents=True, exist_ok=True)
    folder = Path(train.get("cache_dir") or cache.default_cache_dir())

    tr_split, va_split, tr_path, va_path = _splits(train)
    init, new_lm = None, False
    if train["init"]:
        init = HSANet.from_pretrained(train["init"], device="cpu")
        init.load_decoder()
        config = init.config
        # another language model on the trained graph side: a new decoder (and its tokenizer)
        new_lm = any(k in model_over and model_over[k] != getattr(config, k) for k in LM_KEYS)
        for key, value in model_over.items():
            setattr(config, key, value)
        if new_lm:
            config.vocab_size = 0
        config.validate()
    else:
        config = HSANetConfig(**model_over)

    legacy = va_split is None                  # select on a held-out part of the training file
    if legacy:
        n_rows = len(tr_split.smiles)
        tr_idx, ho_idx = holdout_split(n_rows, train["holdout"] or 0.1, seed=train["split_seed"])
        fit_rows = ([tr_split.smiles[i] for i in tr_idx], [tr_split.descriptions[i] for i in tr_idx])
        sel_rows = ([tr_split.smiles[i] for i in ho_idx], [tr_split.descriptions[i] for i in ho_idx])
    else:
        fit_rows = (tr_split.smiles, tr_split.descriptions)
        sel_rows = (va_split.smiles, va_split.descriptions)

    if init is not None and new_lm:
        model = HSANet(config, _new_tokenizer(config, fit_rows, train))
        graph = {k: v for k, v in init.state_dict().items() if not k.startswith("decoder.")}
        missing, unexpected = model.load_state_dict(graph, strict=False)
        if unexpected or any(not m.startswith("decoder.") for m in missing):
            raise ConfigError(f"--init {train['init']}: its graph side does not fit this config "
                              f"(missing {[m for m in missing if not m.startswith('decoder.')][:5]}, "
                              f"unexpected {unexpected[:5]}); keep the graph-side settings of the checkpoint")
        print(f"graph side from {train['init']}; new language model: {config.lm_type} {config.lm_path}")
    elif init is not None:
        model = init
        if config.copy_mechanism and model.decoder.copy is None:
            from hsanet.lm.decoder import CopyHead

            model.decoder.copy = CopyHead(model.decoder.causal.get_input_embeddings().embedding_dim)
        print(f"initialized from {train['init']}")
    else:
        model = HSANet(config, _new_tokenizer(config, fit_rows, train))

    pool_cache: dict = {}

    def pool(smiles=None, captions=None) -> FingerprintIndex:
        """The training molecules as the retrieval pool, built once and only when needed: from the
        molecules the training set was just parsed into, or from the prepared (cached) set."""
        if "index" not in pool_cache:
            if smiles is None:
                smiles, captions = [it.smiles for it in tr_ds.items], [it.caption for it in tr_ds.items]
            pool_cache["index"] = FingerprintIndex.build(smiles, captions)
        return pool_cache["index"]

    sig = {**cache.decoder_signature(model), "train_file": cache.file_hash(tr_path), "limit": train["limit"],
           "legacy": legacy, "holdout": train["holdout"] if legacy else 0, "split_seed": train["split_seed"]}
    tr_ds, skipped = prepare_dataset(model, train, folder, sig, "fit", *fit_rows, pool, exclude_self=True)
    va_sig = dict(sig, val_file=cache.file_hash(va_path) if va_path else "", val_limit=train.get("val_limit", 0))
    va_ds, _ = prepare_dataset(model, train, folder, va_sig, "select", *sel_rows, pool, exclude_self=False)
    for row, why in skipped:
        print(f"skipped training row {row}: {why}")
    what = (f"ChEBI-20 {tr_split.name} ({len(tr_ds)} for training, {len(va_ds)} of it held out)" if legacy else
            f"ChEBI-20 {tr_split.name} ({len(tr_ds)} molecules) / {va_split.name} ({len(va_ds)}) for selection")
    print(f"data: {what}; {len(skipped)} training rows skipped; prepared in {time.time() - start:.1f} s")
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params / 1e6:.2f} M parameters, variant {config.variant}, retrieval_k {config.retrieval_k}")

    from hsanet.training.module import CaptionModule, SaveBest

    _, devices, _ = resolve_devices(train)
    world = devices * int(train.get("num_nodes") or 1)
    accumulate = int(train.get("accumulate") or 1)
    bs = train["batch_size"]
    # optimizer steps per epoch: the number of global batches, the same in every process
    steps_per_epoch = max(1, len(LengthGroupedSampler(tr_ds.lengths(), bs, seed=train["seed"],
                                                      parts=world * accumulate).global_batches(0)))
    meta = {"task": "caption", "init": str(train["init"] or ""), "copy_mechanism": config.copy_mechanism,
            "data": what, "n_train": len(tr_ds), "n_selection": len(va_ds), "seed": train["seed"],
            "variant": config.variant, "parameters": n_params,
            "recipe": {k: train[k] for k in ("batch_size", "lr", "warmup_steps", "weight_decay", "max_minutes",
                                              "epochs", "precision")}}
    best_cb = SaveBest(out / "best", meta=meta)
    horizon_s = 60.0 * float(train.get("schedule_minutes") or train["max_minutes"]) * 0.97
    module = CaptionModule(model, lr=train["lr"], weight_decay=train["weight_decay"],
                           warmup_steps=train["warmup_steps"], total_steps=steps_per_epoch * train["epochs"],
                           max_seconds=horizon_s, seed=train["seed"])
    trainer, precision = _trainer(train, out, [best_cb, *(callbacks or [])], steps_per_epoch)
    rank = trainer.global_rank          # known from the launcher's environment (torchrun, SLURM, Lightning)
    sampler = LengthGroupedSampler(tr_ds.lengths(), bs, seed=train["seed"], parts=world * accumulate,
                                   rank=rank, accumulate=accumulate)
    tr_dl = ResumableLoader(tr_ds, sampler, collate_fn=collate)
    module.loader = tr_dl
    va_sampler = LengthGroupedSampler(va_ds.lengths(), 32 * world, shuffle=False, parts=world, rank=rank)
    va_dl = torch.utils.data.DataLoader(va_ds, batch_sampler=va_sampler, collate_fn=collate)
    meta["recipe"]["precision"] = precision
    print(f"precision {precision}, {world} process(es), {torch.get_num_threads()} thread(s) each")
    fit_start = time.time()
    trainer.fit(module, tr_dl, va_dl, ckpt_path=train["resume"] or None)
    fit_seconds = time.time() - fit_start

    result = {"out": str(out / "best"), "last": str(out / "last.ckpt"), "steps": trainer.global_step,
              "epochs_run": trainer.current_epoch, "precision": precision, "parameters": n_params,
              "fit_seconds": round(fit_seconds, 1)}
    if trainer.global_rank != 0:
        return result
    # the saved model retrieves from the whole training file
    if (out / "best" / "config.json").exists():
        best = HSANet.from_pretrained(out / "best", device="cpu")
        if config.retrieval_k:
            attach_training_pool(best, tr_split, None if legacy else pool())
        best.meta["wall_seconds"] = round(time.time() - start, 1)
        best.save_pretrained(out / "best")
        result["best_val_loss"] = best.meta.get("best_val_loss")
    result["wall_seconds"] = round(time.time() - start, 1)
    (out / "train_result.json").write_text(json.dumps(result, indent=2) + "\n")
    return result
