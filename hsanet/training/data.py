"""Training data for captioning: parsed molecules, their graphs, token ids and retrieved neighbours.

Everything that does not change between epochs (RDKit parsing, featurization, tokenization, the
neighbour lists) is computed once. Batches group molecules of similar prompt + caption length
(length-grouped batching) so little compute is spent on padding.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset, Sampler
from torch_geometric.data import Batch

from ..chem import MoleculeError, mol_to_data, parse


@dataclass
class CaptionItem:
    smiles: str
    caption: str
    data: object
    prompt: list[int]
    target: list[int]


class CaptionDataset(Dataset):
    def __init__(self, items: list[CaptionItem]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> CaptionItem:
        return self.items[i]

    def lengths(self) -> list[int]:
        return [len(it.prompt) + len(it.target) for it in self.items]


def parse_rows(smiles: list[str], captions: list[str], max_atoms: int) -> tuple[list, list[str], list[tuple[int, str]]]:
    """Parse SMILES; returns molecules, captions and (row, reason) for every row that was skipped."""
    mols, caps, skipped = [], [], []
    for i, (s, c) in enumerate(zip(smiles, captions)):
        try:
            mols.append(parse(s, max_atoms=max_atoms))
            caps.append(c)
        except MoleculeError as exc:
            skipped.append((i, str(exc)))
    return mols, caps, skipped


def build_dataset(model, mols, captions, references: list[list[str]]) -> CaptionDataset:
    dec = model.decoder
    items = [CaptionItem(m.smiles, c, mol_to_data(m.mol), dec.prompt_ids(m.smiles, refs), dec.target_ids(c))
             for m, c, refs in zip(mols, captions, references)]
    return CaptionDataset(items)


def collate(items: list[CaptionItem]) -> dict:
    return {"batch": Batch.from_data_list([it.data for it in items]),
            "prompts": [it.prompt for it in items], "targets": [it.target for it in items],
            "smiles": [it.smiles for it in items], "captions": [it.caption for it in items]}


class LengthGroupedSampler(Sampler):
    """Batches of similar length: sort within shuffled mega-batches, then shuffle the batches."""

    def __init__(self, lengths: list[int], batch_size: int, shuffle: bool = True, seed: int = 0, group: int = 50) -> None:
        self.lengths, self.batch_size, self.shuffle, self.seed, self.group = lengths, batch_size, shuffle, seed, group
        self.epoch = 0

    def __iter__(self):
        idx = list(range(len(self.lengths)))
        rng = random.Random(self.seed + self.epoch)
        self.epoch += 1
        if self.shuffle:
            rng.shuffle(idx)
        mega = self.batch_size * self.group
        batches = []
        for s in range(0, len(idx), mega):
            chunk = sorted(idx[s:s + mega], key=lambda i: self.lengths[i])
            batches += [chunk[j:j + self.batch_size] for j in range(0, len(chunk), self.batch_size)]
        if self.shuffle:
            rng.shuffle(batches)
        return iter(batches)

    def __len__(self) -> int:
        return (len(self.lengths) + self.batch_size - 1) // self.batch_size


def to_device_batch(b: dict, device) -> dict:
    b = dict(b)
    b["batch"] = b["batch"].to(device)
    return b


__all__ = ["CaptionItem", "CaptionDataset", "parse_rows", "build_dataset", "collate", "LengthGroupedSampler",
           "to_device_batch", "torch"]
