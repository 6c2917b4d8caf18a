"""Batch inference under Lightning's predict loop, on one or several devices (not part of the paper).

``hsanet evaluate --devices N`` and ``hsanet analyze --file F --devices N`` run their per-molecule
work (captions; traces) through ``Trainer.predict``: the rows are split between N processes (DDP,
Lightning's distributed sampler), each runs ``fn`` on its chunks, and the results are gathered on
rank 0 in input order. Other ranks get ``None`` and print nothing. With one device the same loop
runs in-process, so the output does not depend on how many devices computed it.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import lightning as L
import torch
from torch.utils.data import Dataset


class _Rows(Dataset):
    def __init__(self, rows: Sequence[Any]) -> None:
        self.rows = list(rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        return i, self.rows[i]


def _collate(items):
    return [i for i, _ in items], [r for _, r in items]


class _Predictor(L.LightningModule):
    def __init__(self, model: torch.nn.Module, fn: Callable[[list], list]) -> None:
        super().__init__()
        self.model, self.fn = model, fn

    def predict_step(self, batch, batch_idx):
        index, rows = batch
        return list(zip(index, self.fn(rows)))


def predict_rows(model: torch.nn.Module, rows: Sequence[Any], fn: Callable[[list], list], batch_size: int = 32,
                 devices: int | str = 1, accelerator: str = "auto", strategy: str = "auto",
                 num_nodes: int = 1) -> list | None:
    """``fn`` over ``rows`` in chunks of ``batch_size``, under Lightning's predict loop.

    Returns the results in input order on rank 0, ``None`` on the other ranks.
    """
    if accelerator == "auto":
        accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    devices = int(devices) if str(devices) != "auto" else (torch.cuda.device_count() if accelerator == "gpu" else 1)
    if strategy == "auto" and devices * num_nodes > 1:
        strategy = "ddp"
    trainer = L.Trainer(accelerator=accelerator, devices=devices, num_nodes=num_nodes, strategy=strategy,
                        logger=False, enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False, inference_mode=True)
    loader = torch.utils.data.DataLoader(_Rows(rows), batch_size=batch_size, shuffle=False, collate_fn=_collate)
    model.eval()
    out = trainer.predict(_Predictor(model, fn), loader) or []
    mine = [pair for chunk in out for pair in chunk]
    if trainer.world_size > 1:
        import torch.distributed as dist

        parts: list = [None] * trainer.world_size
        dist.all_gather_object(parts, mine)
        # tear the process group down on every rank before it goes its own way: a rank that exits
        # with gloo's threads still running can abort ("terminate called without an active exception")
        dist.barrier()
        dist.destroy_process_group()
        if trainer.global_rank != 0:
            return None
        mine = [pair for part in parts for pair in part]
    results: dict = {}
    for i, r in mine:                   # the distributed sampler pads with repeated rows
        results.setdefault(i, r)
    return [results[i] for i in range(len(rows))]
