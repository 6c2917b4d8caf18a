"""Training data for captioning: parsed molecules, their graphs, token ids and retrieved neighbours.

Everything that does not change between epochs (RDKit parsing, featurization, tokenization, the
neighbour lists) is computed once, and kept on disk by :mod:`hsanet.training.cache` (keyed by the
data files' hashes and the settings that shape it), so a resumed or repeated run starts at once.

Batches: :class:`LengthGroupedSampler` groups molecules of similar prompt + caption length
(length-grouped batching: little compute is spent on padding). It yields *global* batches, the
same whatever the number of processes, and cuts each into ``parts`` contiguous micro-batches
(processes x gradient-accumulation steps); process ``rank`` takes its own ``accumulate`` parts.
The order depends only on (seed, epoch), so one process with ``accumulate=2`` sees exactly the
micro-batches that two DDP processes see. :class:`ResumableLoader` skips the batches an
interrupted epoch already trained, so ``--resume`` continues the same data order.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from torch_geometric.data import Batch

from hsanet.featurizers import MoleculeError, mol_to_data, parse


@dataclass
class CaptionItem:
    smiles: str
    caption: str
    data: object
    prompt: list[int]
    target: list[int]
    index: int = 0              # position in its dataset: keys the molecule's training noise


class CaptionDataset(Dataset):
    def __init__(self, items: list[CaptionItem]) -> None:
        self.items = items
        for i, it in enumerate(items):
            it.index = i

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> CaptionItem:
        return self.items[i]

    def lengths(self) -> list[int]:
        return [len(it.prompt) + len(it.target) for it in self.items]

    def tokens(self) -> int:
        return sum(self.lengths())


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
    """Graphs and token ids of parsed molecules (tokenization batched by the tokenizers library)."""
    dec = model.decoder
    prompts = dec.prompt_ids_many([m.smiles for m in mols], references)
    targets = dec.target_ids_many(captions)
    items = [CaptionItem(m.smiles, c, mol_to_data(m.mol), p, t)
             for m, c, p, t in zip(mols, captions, prompts, targets)]
    return CaptionDataset(items)


def collate(items: list[CaptionItem]) -> dict:
    return {"batch": Batch.from_data_list([it.data for it in items]),
            "prompts": [it.prompt for it in items], "targets": [it.target for it in items],
            "smiles": [it.smiles for it in items], "captions": [it.caption for it in items],
            "index": torch.tensor([it.index for it in items], dtype=torch.long)}


class LengthGroupedSampler(Sampler):
    """Global batches of similar length: sort within shuffled mega-batches, then shuffle the batches.

    Parameters
    ----------
    lengths : list of int
        Prompt + caption tokens per item.
    batch_size : int
        Molecules per optimizer step, over all processes and accumulation steps.
    shuffle, seed, group :
        Shuffle the items and the batches (order fixed by ``seed`` and the epoch); mega-batches
        hold ``group`` batches.
    parts, rank, accumulate :
        Each global batch is cut into ``parts`` contiguous micro-batches; this process yields
        parts ``rank * accumulate ... rank * accumulate + accumulate - 1`` of each. With
        ``parts > 1`` a last global batch with fewer than ``parts`` molecules is dropped.
    """

    def __init__(self, lengths: list[int], batch_size: int, shuffle: bool = True, seed: int = 0, group: int = 50,
                 parts: int = 1, rank: int = 0, accumulate: int = 1) -> None:
        if batch_size < parts:
            raise ValueError(f"batch size {batch_size} is smaller than processes x accumulation ({parts})")
        self.lengths, self.batch_size, self.shuffle, self.seed, self.group = lengths, batch_size, shuffle, seed, group
        self.parts, self.rank, self.accumulate = parts, rank, accumulate
        self.epoch = 0
        self.skip = 0                   # micro-batches of this epoch to leave out (resume)

    @property
    def sampler(self) -> "LengthGroupedSampler":
        """Lightning calls ``set_epoch`` on ``loader.batch_sampler.sampler`` before every epoch."""
        return self

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning before each epoch; a new epoch clears a pending resume skip."""
        if epoch != self.epoch:
            self.epoch, self.skip = epoch, 0

    def global_batches(self, epoch: int) -> list[list[int]]:
        idx = list(range(len(self.lengths)))
        rng = random.Random(self.seed * 100_003 + epoch)
        if self.shuffle:
            rng.shuffle(idx)
        mega = self.batch_size * self.group
        batches = []
        for s in range(0, len(idx), mega):
            chunk = sorted(idx[s:s + mega], key=lambda i: self.lengths[i])
            batches += [chunk[j:j + self.batch_size] for j in range(0, len(chunk), self.batch_size)]
        if self.shuffle:
            rng.shuffle(batches)
        if self.parts > 1:
            batches = [b for b in batches if len(b) >= self.parts]
        return batches

    def _mine(self, batch: list[int]) -> list[list[int]]:
        n, p = len(batch), self.parts
        cuts = [n * i // p for i in range(p + 1)]
        first = self.rank * self.accumulate
        return [batch[cuts[j]:cuts[j + 1]] for j in range(first, first + self.accumulate)]

    def __iter__(self):
        out = [mb for b in self.global_batches(self.epoch) for mb in self._mine(b)]
        skip, self.skip = self.skip, 0
        return iter(out[skip:])

    def __len__(self) -> int:
        n = len(self.lengths)
        if self.parts == 1:
            return (n + self.batch_size - 1) // self.batch_size
        return len(self.global_batches(self.epoch)) * self.accumulate


class ResumableLoader(DataLoader):
    """A DataLoader over a :class:`LengthGroupedSampler` that Lightning can checkpoint mid-epoch.

    ``state_dict`` holds the epoch and the micro-batches trained in it (counted by the training
    module in each training step, so batches the loader fetched ahead are not counted); on resume
    the sampler leaves those out."""

    def __init__(self, dataset, batch_sampler: LengthGroupedSampler, **kwargs) -> None:
        super().__init__(dataset, batch_sampler=batch_sampler, **kwargs)
        self.trained = 0

    def mark_trained(self) -> None:
        self.trained += 1

    def __iter__(self):
        self.trained = self.batch_sampler.skip
        return super().__iter__()

    def state_dict(self) -> dict:
        return {"epoch": self.batch_sampler.epoch, "trained": self.trained}

    def load_state_dict(self, state: dict) -> None:
        self.batch_sampler.epoch = int(state["epoch"])
        self.batch_sampler.skip = int(state["trained"])
        self.trained = int(state["trained"])


__all__ = ["CaptionItem", "CaptionDataset", "parse_rows", "build_dataset", "collate", "LengthGroupedSampler",
           "ResumableLoader"]
