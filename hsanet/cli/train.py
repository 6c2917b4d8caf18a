"""``hsanet train``: caption training on ChEBI-20 or property heads on MoleculeNet.

    hsanet train --task caption  [--config cfg.yaml] [--variant full] [--max-minutes 80] --out runs/cap
    hsanet train --task property --init assets/hsanet-default --datasets BBBP,BACE,ClinTox --out runs/prop

A config file (YAML or TOML) may hold a ``model:`` table (HSANetConfig fields) and a ``train:``
table (the flags below, with underscores); flags given on the command line win.
"""
from __future__ import annotations

import json
from pathlib import Path

from hsanet.config import VARIANTS

TRAIN_DEFAULTS = {
    "task": "caption", "out": "runs/caption", "max_minutes": 60.0, "epochs": 100, "batch_size": 16,
    "lr": 1e-3, "warmup_steps": 200, "weight_decay": 0.01, "seed": 0, "holdout": 0.1, "limit": 0,
    "vocab_size": 6000, "val_every": 1, "patience": 6, "threads": 0, "datasets": "BBBP,BACE,ClinTox",
    "init": "", "split_seed": 0, "split_seeds": "", "resume": "", "data_dir": "", "precision": "", "seeds": 3, "head_epochs": 60,
    "readout": "levels", "head_hidden": 0,
    # engine (caption task)
    "train_split": "train", "val_split": "validation", "val_limit": 0, "cache_dir": "", "no_cache": False,
    "accelerator": "auto", "devices": "auto", "num_nodes": 1, "strategy": "auto", "accumulate": 1,
    "max_steps": -1, "val_every_steps": 0, "schedule_minutes": 0.0, "ckpt_every_steps": 200,
}


def _read_config(path: str | None) -> dict:
    if not path:
        return {}
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"config file not found: {p}")
    from hsanet.config import ConfigError

    try:
        if p.suffix in (".toml",):
            import tomllib

            cfg = tomllib.loads(p.read_text())
        else:
            import yaml

            cfg = yaml.safe_load(p.read_text()) or {}
    except Exception as exc:            # yaml.YAMLError, tomllib.TOMLDecodeError, undecodable bytes
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{p} is not a valid {'TOML' if p.suffix == '.toml' else 'YAML'} file: {first}") from None
    if not isinstance(cfg, dict) or set(cfg) - {"model", "train"}:
        extra = sorted(set(cfg) - {"model", "train"}) if isinstance(cfg, dict) else [type(cfg).__name__]
        raise ConfigError(f"{p}: a config holds the tables model: and train: only; found {extra}")
    for table in ("model", "train"):
        if not isinstance(cfg.get(table, {}), dict):
            raise ConfigError(f"{p}: {table}: must be a table of key: value pairs")
    return cfg


def _check_keys(path, train_keys, model_keys) -> None:
    """Unknown keys are an error (a typo would otherwise be silently ignored)."""
    import dataclasses
    import difflib

    from hsanet.config import ConfigError, HSANetConfig

    fields = {f.name for f in dataclasses.fields(HSANetConfig)}
    for table, keys, known in (("train", train_keys, set(TRAIN_DEFAULTS)), ("model", model_keys, fields)):
        for key in keys:
            if key not in known:
                near = difflib.get_close_matches(key, sorted(known), n=1)
                hint = f"; did you mean {near[0]!r}?" if near else f"; known: {', '.join(sorted(known))}"
                raise ConfigError(f"{path}: unknown {table} key {key!r}{hint}")


def resolve(args) -> tuple[dict, dict]:
    """Merge defaults, config file and flags into (train options, model overrides)."""
    cfg = _read_config(args.config)
    _check_keys(args.config, cfg.get("train", {}), cfg.get("model", {}))
    train = dict(TRAIN_DEFAULTS)
    train.update(cfg.get("train", {}))
    for key in TRAIN_DEFAULTS:
        v = getattr(args, key, None)
        if v is not None:
            train[key] = v
    model = dict(cfg.get("model", {}))
    if args.variant:
        model["variant"] = args.variant
    if args.retrieval_k is not None:
        model["retrieval_k"] = args.retrieval_k
    if args.copy:
        model["copy_mechanism"] = True
    return train, model


PRECISIONS = ("32-true", "32", "64-true", "64", "bf16-mixed", "bf16-true", "bf16", "16-mixed", "16-true", "16")
# (key, lowest allowed, whether the lowest itself is allowed): checked after config file and flags merge
_RANGES = (("max_minutes", 0, False), ("epochs", 1, True), ("batch_size", 1, True), ("lr", 0, False),
           ("warmup_steps", 0, True), ("weight_decay", 0, True), ("limit", 0, True), ("vocab_size", 16, True),
           ("val_every", 1, True), ("patience", 1, True), ("threads", 0, True), ("seeds", 1, True),
           ("head_epochs", 1, True), ("head_hidden", 0, True), ("val_limit", 0, True), ("num_nodes", 1, True),
           ("accumulate", 1, True), ("val_every_steps", 0, True), ("schedule_minutes", 0, True),
           ("ckpt_every_steps", 0, True), ("split_seed", 0, True))


def check_values(train: dict) -> None:
    """Type and range of every training option (from the config file or the command line), before any
    work starts: a wrong value is a UsageError naming the option and what it must be."""
    from hsanet.cli.errors import UsageError

    def name(key: str) -> str:
        return "--" + key.replace("_", "-")

    for key, low, inclusive in _RANGES:
        value = train.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UsageError(f"{name(key)} must be a number, got {value!r}")
        if isinstance(TRAIN_DEFAULTS[key], int) and not float(value).is_integer():
            raise UsageError(f"{name(key)} must be a whole number, got {value!r}")
        if value < low or (value == low and not inclusive):
            raise UsageError(f"{name(key)} must be {'at least' if inclusive else 'more than'} {low} (got {value})")
    if train["task"] == "property" and not [n for n in str(train["datasets"]).split(",") if n.strip()]:
        raise UsageError("--datasets: name at least one MoleculeNet dataset, e.g. BBBP,BACE,ClinTox")
    if isinstance(train["max_steps"], bool) or not isinstance(train["max_steps"], (int, float)) \
            or not float(train["max_steps"]).is_integer():
        raise UsageError(f"--max-steps must be a whole number, got {train['max_steps']!r}")
    if not 0 <= float(train["holdout"]) < 1:
        raise UsageError(f"--holdout must be in [0, 1) (got {train['holdout']})")
    if int(train["max_steps"]) < -1 or int(train["max_steps"]) == 0:
        raise UsageError(f"--max-steps must be a positive number of steps, or -1 for no limit (got {train['max_steps']})")
    if train["task"] not in ("caption", "property"):
        raise UsageError(f"unknown task {train['task']!r}: use caption or property")
    if train["precision"] and str(train["precision"]) not in PRECISIONS:
        raise UsageError(f"--precision must be one of {', '.join(PRECISIONS)} (got {train['precision']!r})")
    devices = str(train["devices"])
    if devices != "auto" and not all(part.strip().isdigit() for part in devices.split(",")) or devices in ("0", "-1"):
        raise UsageError(f"--devices must be auto, a count of at least 1, or a comma-separated list of device ids "
                         f"(got {devices!r})")
    if train["split_seeds"] and not all(p.strip().lstrip("-").isdigit() for p in str(train["split_seeds"]).split(",")):
        raise UsageError(f"--split-seeds must be comma-separated integers such as 0,1,2 (got {train['split_seeds']!r})")
    from hsanet.cli.errors import check_strategy

    check_strategy(str(train["strategy"]))
    if train["accelerator"] == "gpu":
        import torch

        if not torch.cuda.is_available():
            raise UsageError("--accelerator gpu: no CUDA GPU is available on this machine; use auto or cpu")
    for key in ("resume", "init"):
        if train[key] and not Path(train[key]).exists():
            raise UsageError(f"--{key} {train[key]}: no such {'file' if key == 'resume' else 'checkpoint folder'}")


def cmd_train(args) -> int:
    train, model_over = resolve(args)
    check_values(train)
    if model_over:                      # the model table's values too, before any data is read
        from hsanet.config import HSANetConfig

        HSANetConfig.from_dict(dict(model_over))
    if train["task"] == "caption":
        from hsanet.training.caption import train_caption

        result = train_caption(train, model_over)
    elif train["task"] == "property":
        from hsanet.training.property import train_property

        result = train_property(train, model_over)
    else:
        raise ValueError(f"unknown task {train['task']!r}: use caption or property")
    print(json.dumps(result, indent=2))
    return 0


def register(sub) -> None:
    p = sub.add_parser("train", help="train HSA-Net (captions on ChEBI-20, or property heads)")
    p.add_argument("--task", choices=["caption", "property"])
    p.add_argument("--config", help="YAML or TOML file with model: and train: tables")
    p.add_argument("--out", help="output folder (the best model is saved in OUT/best)")
    p.add_argument("--variant", choices=VARIANTS, help="HAP/SAF variant (the ablations of Table 3)")
    p.add_argument("--retrieval-k", dest="retrieval_k", type=int, help="neighbour captions in the prompt (0 = off)")
    p.add_argument("--copy", action="store_true", help="add the pointer-generator copy mechanism")
    p.add_argument("--max-minutes", dest="max_minutes", type=float, help="wall-clock budget")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", dest="batch_size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--warmup-steps", dest="warmup_steps", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--holdout", type=float, help="fraction of the training data held out for model selection")
    p.add_argument("--limit", type=int, help="use only the first N training molecules (smoke runs)")
    p.add_argument("--patience", type=int, help="early stopping patience (validations)")
    p.add_argument("--threads", type=int, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--datasets", help="property task: comma-separated MoleculeNet names")
    p.add_argument("--init", help="start from this checkpoint (caption: continue training; property: its encoder)")
    p.add_argument("--seeds", type=int, help="property task: number of training seeds")
    p.add_argument("--head-epochs", dest="head_epochs", type=int, help="property task: epochs of head training")
    p.add_argument("--readout", choices=["levels", "embedding"],
                   help="property task: what the heads read (levels = pooled GIN levels, the default)")
    p.add_argument("--head-hidden", dest="head_hidden", type=int,
                   help="property task: hidden units of the heads (0 = linear, logistic regression; default)")
    p.add_argument("--split-seed", dest="split_seed", type=int, help="property task: scaffold split seed")
    p.add_argument("--split-seeds", dest="split_seeds",
                   help="property task: several scaffold split seeds, comma-separated (e.g. 0,1,2; 0 is Hu et al.'s "
                        "deterministic split); mean and std over them, heads of the first saved")
    p.add_argument("--resume", help="continue an interrupted run: its OUT/last.ckpt (same data and options)")
    p.add_argument("--data-dir", dest="data_dir", help="data folder (default ../shared/data or $HSANET_DATA)")
    p.add_argument("--precision", help="Lightning precision: 32-true, bf16-mixed, ... (default: bf16-mixed on a "
                   "GPU or on a CPU with bf16 units (AMX / AVX512-BF16), else 32-true)")
    p.add_argument("--train-split", dest="train_split", choices=["train", "validation"],
                   help="ChEBI-20 split to train on (default train)")
    p.add_argument("--val-split", dest="val_split", choices=["validation", "train"],
                   help="split that chooses the best weights (default validation; the same split as "
                        "--train-split holds out --holdout of it)")
    p.add_argument("--val-limit", dest="val_limit", type=int, help="use only the first N selection molecules")
    p.add_argument("--cache-dir", dest="cache_dir", help="prepared-data cache (default $HSANET_CACHE or ~/.cache/hsanet)")
    p.add_argument("--no-cache", dest="no_cache", action="store_true", default=None, help="prepare the data afresh")
    p.add_argument("--accelerator", choices=["auto", "cpu", "gpu"], help="default: gpu when present")
    p.add_argument("--devices", help="processes / GPUs per machine (default: all GPUs, or 1 on CPU)")
    p.add_argument("--num-nodes", dest="num_nodes", type=int, help="machines (default 1)")
    p.add_argument("--strategy", help="Lightning strategy (auto: ddp on several devices)")
    p.add_argument("--accumulate", type=int, help="gradient accumulation: micro-batches per optimizer step")
    p.add_argument("--max-steps", dest="max_steps", type=int, help="stop after this many optimizer steps (-1: no limit)")
    p.add_argument("--val-every-steps", dest="val_every_steps", type=int,
                   help="validate every N optimizer steps (0: once per epoch)")
    p.add_argument("--schedule-minutes", dest="schedule_minutes", type=float,
                   help="time the LR schedule plans for over all sittings (default: --max-minutes)")
    p.add_argument("--ckpt-every-steps", dest="ckpt_every_steps", type=int,
                   help="also write OUT/last.ckpt every N steps (0: only at the end)")
    for action in p._actions:     # the defaults live in TRAIN_DEFAULTS (a config file may set them too)
        if action.dest in TRAIN_DEFAULTS and action.default is None and action.option_strings:
            shown = TRAIN_DEFAULTS[action.dest]
            if shown is not None and shown is not False and shown != "" and "default" not in (action.help or "").lower():
                action.help = f"{action.help or ''} (default: {shown})".strip()
    p.set_defaults(func=cmd_train)

