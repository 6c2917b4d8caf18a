"""Property heads on MoleculeNet (BBBP, BACE, ClinTox by default) on top of a trained HSA-Net.

The encoder (GIN -> HAP -> SAF) is the caption model's and stays frozen, so one checkpoint serves
both the captions and the properties; the heads (nn/heads.py) learn from the read-out that
``--readout`` names: ``levels`` (default: mean and max pooling of every GIN level, 3,600 numbers) or
``embedding`` (the 64-d mean of the SAF tokens). With ``--head-hidden 0`` (default) the heads are
linear: one L2-regularized logistic regression per task (scikit-learn), inputs standardized on the
training part, the regularization strength chosen per task by validation ROC-AUC; the
standardization is folded into the saved linear layer. It is a convex fit, so the seeds give the
same heads; with ``--head-hidden N`` an MLP is trained per seed with Lightning.
Protocol of Hu et al. (2020): the deterministic scaffold split (80/10/10), several training seeds,
ROC-AUC on the test part averaged over tasks with both classes; the best epoch by validation ROC-AUC.
``--split-seeds 0,1,2`` repeats the split (0: the deterministic one; others: Hu et al.'s random
scaffold split) and reports mean and std over splits, the spread a convex head's seeds cannot show.
Molecules of all datasets train one multi-task head set (labels of other datasets are missing).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from hsanet.featurizers import MoleculeError, featurize, parse
from hsanet.config import ConfigError
from hsanet.data.moleculenet import REGISTRY, load_moleculenet
from hsanet.data.splits import scaffold_split
from hsanet.metrics.properties import roc_auc_multitask
from hsanet.models.hsanet import HSANet
from hsanet.nn.heads import PropertyHeads


@torch.no_grad()
def embed_smiles(model: HSANet, smiles: list[str], batch_size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Frozen molecule embeddings; returns (embeddings, ok mask) — unparsable rows get a zero row."""
    model.eval()
    dim = model.property_dim
    out = np.zeros((len(smiles), dim), dtype=np.float32)
    ok = np.zeros(len(smiles), dtype=bool)
    mols, idx = [], []
    for i, s in enumerate(smiles):
        try:
            mols.append(parse(s, max_atoms=10_000))
            idx.append(i)
        except MoleculeError:
            pass
    for b in range(0, len(mols), batch_size):
        enc = model.encode(featurize(mols[b:b + batch_size]))
        emb = model.property_features(enc["levels"], enc["batch"].batch, enc["embedding"]).float().cpu().numpy()
        out[idx[b:b + batch_size]] = emb
    ok[idx] = True
    return out, ok


LOGREG_C = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)


def _fit_linear_heads(emb_tr, y_tr, emb_va, y_va, tasks: dict):
    """Linear heads: per task, scikit-learn's logistic regression on standardized inputs, C chosen
    by validation ROC-AUC; the standardization is folded into the weights (w / sd, b - w . mu / sd)."""
    from sklearn.linear_model import LogisticRegression

    mu, sd = emb_tr.mean(0), emb_tr.std(0) + 1e-6
    z_tr, z_va = (emb_tr - mu) / sd, (emb_va - mu) / sd
    heads = PropertyHeads(emb_tr.shape[1], tasks, hidden=0)
    W = np.zeros((len(tasks), emb_tr.shape[1]), dtype=np.float64)
    b = np.zeros(len(tasks), dtype=np.float64)
    val = []
    for j in range(len(tasks)):
        m_tr, m_va = ~np.isnan(y_tr[:, j]), ~np.isnan(y_va[:, j])
        y = y_tr[m_tr, j]
        if len(np.unique(y)) < 2:              # one class only: predict its training prevalence
            p = float(np.clip(y.mean() if y.size else 0.5, 1e-3, 1 - 1e-3))
            b[j] = np.log(p / (1 - p))
            continue
        best = None
        for C in LOGREG_C:
            clf = LogisticRegression(C=C, max_iter=5000).fit(z_tr[m_tr], y)
            if m_va.sum() and len(np.unique(y_va[m_va, j])) == 2:
                score, _ = roc_auc_multitask(y_va[m_va, j][:, None], clf.predict_proba(z_va[m_va])[:, 1:])
            else:
                score = -C                      # no validation signal: the strongest regularization
            if best is None or score > best[0]:
                best = (score, clf)
        val.append(best[0])
        w = best[1].coef_[0] / sd
        W[j], b[j] = w, best[1].intercept_[0] - float(w @ mu)
    with torch.no_grad():
        heads.mlp[0].weight.copy_(torch.tensor(W, dtype=torch.float))
        heads.mlp[0].bias.copy_(torch.tensor(b, dtype=torch.float))
    heads.eval()
    return heads, float(np.mean(val)) if val else float("nan")


def _emb_rows(rows) -> dict:
    return {"emb": torch.stack([r[0] for r in rows]), "y": torch.stack([r[1] for r in rows])}


def _fit_heads(emb_tr, y_tr, emb_va, y_va, tasks: dict, seed: int, epochs: int, lr: float, hidden: int = 256):
    import tempfile

    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    from hsanet.training.module import PropertyModule

    torch.manual_seed(seed)
    heads = PropertyHeads(emb_tr.shape[1], tasks, hidden=max(1, int(hidden)))
    heads.set_scaling(torch.tensor(y_tr, dtype=torch.float))
    holder = torch.nn.Module()
    holder.heads = heads
    module = PropertyModule(holder, lr=lr)
    ds = torch.utils.data.TensorDataset(torch.tensor(emb_tr), torch.tensor(y_tr, dtype=torch.float))
    dl = torch.utils.data.DataLoader(ds, batch_size=64, shuffle=True, collate_fn=_emb_rows,
                                     generator=torch.Generator().manual_seed(seed))
    va_ds = torch.utils.data.TensorDataset(torch.tensor(emb_va), torch.tensor(y_va, dtype=torch.float))
    va = torch.utils.data.DataLoader(va_ds, batch_size=max(1, len(y_va)), collate_fn=_emb_rows)
    with tempfile.TemporaryDirectory(prefix="hsanet-heads-") as tmp:
        keep = ModelCheckpoint(dirpath=tmp, filename="best", monitor="val_auc", mode="max", save_top_k=1,
                               save_weights_only=True, enable_version_counter=False)
        trainer = L.Trainer(accelerator="cpu", max_epochs=epochs, enable_progress_bar=False, enable_model_summary=False,
                            logger=False, callbacks=[keep], num_sanity_val_steps=0)
        trainer.fit(module, dl, va)           # one fit; the best epoch by validation ROC-AUC is kept
        state = torch.load(keep.best_model_path, map_location="cpu", weights_only=False)["state_dict"]
        best = float(keep.best_model_score)
    best_state = {k[len("model.heads."):]: v for k, v in state.items() if k.startswith("model.heads.")}
    heads.load_state_dict(best_state)
    heads.eval()
    return heads, best


def split_seeds(train: dict) -> list[int]:
    """The scaffold split seeds to run: ``--split-seeds 0,1,2`` (0 is Hu et al.'s deterministic
    split, others their random scaffold split), else the single ``--split-seed``."""
    text = str(train.get("split_seeds") or "").strip()
    if not text:
        return [int(train.get("split_seed", 0))]
    try:
        seeds = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--split-seeds takes comma-separated integers, e.g. 0,1,2; got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ConfigError(f"--split-seeds takes distinct integers >= 0, e.g. 0,1,2; got {text!r}")
    return seeds


def _stack(parts, all_tasks, splits_of, which: int):
    """Embeddings and labels (NaN where a dataset lacks a task) of one part of every dataset's split."""
    embs, ys = [], []
    for name, names_t, ds, emb, ok in parts:
        idx = np.asarray(splits_of[name][which])
        idx = idx[ok[idx]]
        y = np.full((len(idx), len(all_tasks)), np.nan, dtype=np.float32)
        y[:, [all_tasks.index(t) for t in names_t]] = ds.y[idx]
        embs.append(emb[idx])
        ys.append(y)
    return np.concatenate(embs), np.concatenate(ys)


def fit_domain(model: HSANet, parts, splits_of: dict, data_dir=None):
    """The applicability domain of the kept heads (hsanet/inference/domain.py): per dataset the training
    part of the scaffold split the heads were fitted on (``splits_of``) and a threshold from its
    validation part; for the caption, the ChEBI-20 validation molecules against the retrieval pool
    (when both are there)."""
    from hsanet.data.chebi import load_chebi
    from hsanet.inference.domain import Domain, threshold

    domain = Domain()
    for name, _, ds, _, ok in parts:
        train_idx, valid_idx, _ = splits_of[name]
        domain.add(name, [ds.smiles[i] for i in train_idx if ok[i]], [ds.smiles[i] for i in valid_idx if ok[i]])
    if model.retrieval is not None and model.config.retrieval_k:
        try:
            domain.caption_threshold = threshold(model.retrieval, load_chebi("validation", data_dir).smiles)
        except (FileNotFoundError, OSError, ValueError):
            pass                                # no ChEBI-20 here: no caption threshold
    print("applicability domain (Tanimoto, 5th percentile of validation): "
          + ", ".join(f"{k} {v:.2f}" for k, v in domain.thresholds.items())
          + (f", caption {domain.caption_threshold:.2f}" if domain.caption_threshold is not None else ""))
    return domain


def train_property(train: dict, model_over: dict) -> dict:
    from hsanet.paths import DEFAULT_CHECKPOINT

    start = time.time()
    if train["threads"]:
        torch.set_num_threads(int(train["threads"]))
    init = train["init"] or DEFAULT_CHECKPOINT
    model = HSANet.from_pretrained(init, device="cpu")
    model.config.property_readout = train.get("readout", "levels")
    model.config.property_hidden = int(train.get("head_hidden", 0))
    model.config.validate()
    names = [n.strip() for n in train["datasets"].split(",") if n.strip()]
    data_dir = train["data_dir"] or None
    split_list = split_seeds(train)
    tasks, parts = {}, []
    for name in names:                  # the encoder is frozen: one embedding per molecule, whatever the split
        try:
            ds = load_moleculenet(name, data_dir)
        except KeyError as exc:
            raise ConfigError(f"--datasets: {exc.args[0]}") from None
        if ds.kind != "classification":
            usable = ", ".join(n for n, spec in REGISTRY.items() if spec.kind == "classification")
            raise ConfigError(f"--datasets: {name} is a {ds.kind} dataset; the embedded heads take "
                              f"classification datasets ({usable})")
        emb, ok = embed_smiles(model, ds.smiles)
        names_t = [f"{name}/{t}" for t in ds.task_names]
        for t in names_t:
            tasks[t] = "classification"
        parts.append((name, names_t, ds, emb, ok))
        print(f"{name}: {len(ds)} molecules embedded")
    all_tasks = list(tasks)
    seeds = list(range(int(train.get("seeds", 3))))
    runs, kept, kept_splits = [], None, None      # one run per (split seed, training seed)
    for split_seed in split_list:
        splits_of = {name: scaffold_split(ds.smiles, seed=split_seed) for name, _, ds, _, _ in parts}
        kept_splits = kept_splits or splits_of          # the first split seed's: the heads kept
        emb_tr, y_tr = _stack(parts, all_tasks, splits_of, 0)
        emb_va, y_va = _stack(parts, all_tasks, splits_of, 1)
        linear = None
        for seed in seeds:
            if model.config.property_hidden == 0:   # convex and deterministic: fitted once, same for every seed
                linear = linear or _fit_linear_heads(emb_tr, y_tr, emb_va, y_va, tasks)
                heads, val = linear
            else:
                heads, val = _fit_heads(emb_tr, y_tr, emb_va, y_va, tasks, seed,
                                        epochs=int(train.get("head_epochs", 60)), lr=float(train["lr"]),
                                        hidden=model.config.property_hidden)
            scores = {}
            with torch.no_grad():
                for name, names_t, ds, emb, ok in parts:
                    te = np.asarray(splits_of[name][2])
                    te = te[ok[te]]
                    pred = heads.predict(torch.tensor(emb[te])).numpy()
                    scores[name], _ = roc_auc_multitask(ds.y[te], pred[:, [all_tasks.index(t) for t in names_t]])
            print(f"split seed {split_seed}, seed {seed}: valid ROC-AUC {val:.3f}; test "
                  + ", ".join(f"{k} {v:.3f}" for k, v in scores.items()))
            runs.append(scores)
            if kept is None:
                kept = heads
    summary = {name: {"mean": float(np.mean([s[name] for s in runs])),
                      "std": float(np.std([s[name] for s in runs])),
                      "per_seed": [float(s[name]) for s in runs]} for name in names}
    # attach the heads of the first split seed and first training seed to the model and save it
    model.config.property_tasks = tasks
    model.heads = kept
    model.domain = fit_domain(model, parts, kept_splits, data_dir)
    split_text = ("scaffold (Hu et al. 2020), seed " + str(split_list[0]) if len(split_list) == 1 else
                  "scaffold (Hu et al. 2020), split seeds " + ", ".join(map(str, split_list))
                  + " (0: the deterministic split; others: random scaffold splits)")
    model.meta["properties"] = {"datasets": names, "split": split_text, "split_seeds": split_list,
                                "metric": "test ROC-AUC", "seeds": seeds, "results": summary,
                                "per_seed_order": "split seed major, training seed minor",
                                "committed_heads": f"split seed {split_list[0]}, seed {seeds[0]}",
                                "encoder": "frozen caption model",
                                "readout": model.config.property_readout,
                                "heads": ("linear (logistic regression, C by validation ROC-AUC)"
                                          if model.config.property_hidden == 0 else f"MLP, {model.config.property_hidden} hidden")}
    out = Path(train["out"])
    model.save_pretrained(out)
    result = {"out": str(out), "results": summary, "wall_seconds": round(time.time() - start, 1)}
    (out / "property_result.json").write_text(json.dumps(result, indent=2) + "\n")
    return result
