"""On-disk cache of prepared caption-training data (not part of the paper).

Preparing ChEBI-20 for training (RDKit parsing, OGB features, BRICS fragments, distance
matrices, Morgan fingerprints, the neighbours' captions, tokenization) takes about a minute for the
26,407 training molecules and gives the same result every time. It is done once and kept in a cache
folder (``--cache-dir``, default ``$HSANET_CACHE`` or ``~/.cache/hsanet``) under a key made of:
the SHA-256 of the data file and of the retrieval pool's file, the row limit, the tokenizer's
vocabulary, every config field that changes prompts or graphs, and ``FORMAT`` (raised whenever the
featurization changes). Files: ``<key>.safetensors`` (the graphs and token ids, concatenated) and
``<key>.json`` (SMILES, captions, skipped rows); written to a temporary name and renamed, so
processes started together (DDP) never read half a file. Nothing is unpickled.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch_geometric.data import Data

from hsanet.training.data import CaptionDataset, CaptionItem

FORMAT = 1
GRAPH_KEYS = ("x", "edge_attr", "frag", "degree", "dist")


def default_cache_dir() -> Path:
    return Path(os.environ.get("HSANET_CACHE") or Path.home() / ".cache" / "hsanet")


def file_hash(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cache_key(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def decoder_signature(model) -> dict:
    """The settings that change prompts and targets: the tokenizer's vocabulary and the config."""
    c = model.config
    vocab = json.dumps(sorted(model.tokenizer.vocab().items()))
    return {"vocab": hashlib.sha256(vocab.encode()).hexdigest()[:16], "max_atoms": c.max_atoms,
            "max_smiles_tokens": c.max_smiles_tokens, "max_ref_tokens": c.max_ref_tokens,
            "max_caption_tokens": c.max_caption_tokens, "retrieval_k": c.retrieval_k,
            "instruction": c.instruction, "format": FORMAT}


def save_dataset(ds: CaptionDataset, extra: dict, folder: Path, key: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    items = ds.items
    t = {k: torch.cat([getattr(it.data, k) for it in items]) for k in GRAPH_KEYS}
    t["edge_index"] = torch.cat([it.data.edge_index for it in items], dim=1)
    t["num_atoms"] = torch.tensor([it.data.num_nodes for it in items])
    t["num_edges"] = torch.tensor([it.data.edge_index.shape[1] for it in items])
    t["num_frags"] = torch.tensor([int(it.data.num_frags) for it in items])
    for name in ("prompt", "target"):
        seqs = [getattr(it, name) for it in items]
        t[name] = torch.tensor([x for s in seqs for x in s], dtype=torch.int32)
        t[name + "_len"] = torch.tensor([len(s) for s in seqs])
    meta = {"smiles": [it.smiles for it in items], "captions": [it.caption for it in items], **extra}
    tmp = f".{os.getpid()}.tmp"
    save_file({k: v.contiguous() for k, v in t.items()}, str(folder / (key + ".safetensors" + tmp)))
    (folder / (key + ".json" + tmp)).write_text(json.dumps(meta))
    os.replace(folder / (key + ".safetensors" + tmp), folder / (key + ".safetensors"))
    os.replace(folder / (key + ".json" + tmp), folder / (key + ".json"))


def load_dataset(folder: Path, key: str) -> tuple[CaptionDataset, dict] | None:
    """The cached dataset and its extra fields, or None when there is none (or it is unreadable)."""
    st, js = folder / (key + ".safetensors"), folder / (key + ".json")
    if not (st.exists() and js.exists()):
        return None
    try:
        t = load_file(str(st))
        meta = json.loads(js.read_text())
    except (OSError, ValueError):
        return None
    n_atoms, n_edges = t["num_atoms"].tolist(), t["num_edges"].tolist()
    split = {k: torch.split(t[k], n_atoms) for k in ("x", "frag", "degree")}
    dist = torch.split(t["dist"], [n * n for n in n_atoms])
    edge_attr = torch.split(t["edge_attr"], n_edges)
    edge_index = torch.split(t["edge_index"], n_edges, dim=1)
    prompts = [p.tolist() for p in torch.split(t["prompt"].long(), t["prompt_len"].tolist())]
    targets = [p.tolist() for p in torch.split(t["target"].long(), t["target_len"].tolist())]
    items = []
    for i, n in enumerate(n_atoms):
        data = Data(x=split["x"][i], edge_index=edge_index[i], edge_attr=edge_attr[i], frag=split["frag"][i],
                    degree=split["degree"][i], num_frags=int(t["num_frags"][i]), dist=dist[i], num_nodes=n)
        items.append(CaptionItem(meta["smiles"][i], meta["captions"][i], data, prompts[i], targets[i]))
    extra = {k: v for k, v in meta.items() if k not in ("smiles", "captions")}
    return CaptionDataset(items), extra
