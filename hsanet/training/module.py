"""Lightning modules: the training loop for captions (Eq. 6 loss + SAF balance loss) and properties.

Everything a resumed run needs is in Lightning's checkpoint: weights, optimizer, the LR schedule
(its step and, here, its planned horizon), the epoch and the batches trained in it (the data
loader's state, ``training/data.py``), early stopping and the best score so far (``SaveBest``).
The training noise of a molecule is keyed by (seed, epoch, dataset index) (``hsanet.rng``), so it
does not depend on the batch, the process or the sitting.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import lightning as L
import torch

from ..rng import molecule_keys


def warmup_cosine(step: int, warmup: int, total: int, floor: float = 0.1) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


class CaptionModule(L.LightningModule):
    """Caption training. The LR follows warm-up then cosine decay over ``total_steps`` or, when
    ``max_seconds`` (the time the schedule plans for) is shorter, over the steps that fit in it at
    the speed measured over the first ``warmup + 20`` steps; that horizon is then fixed and kept
    in the checkpoint, so a resumed run continues the same schedule."""

    def __init__(self, model, lr: float = 1e-3, weight_decay: float = 0.01, warmup_steps: int = 200,
                 total_steps: int = 10000, max_seconds: float | None = None, seed: int = 0,
                 loader=None) -> None:
        super().__init__()
        self.model = model
        self.lr, self.weight_decay, self.warmup, self.total = lr, weight_decay, warmup_steps, total_steps
        self.max_seconds = max_seconds
        self.seed = seed
        self.loader = loader                    # a ResumableLoader, told about every trained batch
        self.horizon: int | None = None
        self._clock: tuple[int, float] | None = None      # (step, time) when the speed measurement began

    def lr_factor(self, step: int) -> float:
        if self.horizon is None and self.max_seconds:
            if self._clock is None and step >= 1:
                self._clock = (step, time.time())
            elif self._clock is not None and step >= self.warmup + 20:
                s0, t0 = self._clock
                per_step = (time.time() - t0) / max(step - s0, 1)
                self.horizon = min(self.total, int(step + (self.max_seconds - step * per_step) / per_step))
        total = self.horizon or self.total
        return warmup_cosine(step, self.warmup, max(total, self.warmup + 1))

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["hsanet_schedule"] = {"horizon": self.horizon, "total": self.total}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.horizon = checkpoint.get("hsanet_schedule", {}).get("horizon")

    def on_train_start(self) -> None:
        # a model loaded with from_pretrained is in eval mode; Lightning keeps submodule modes as found
        # (and a run resumed mid-epoch skips on_train_epoch_start)
        self.model.train()

    def on_train_epoch_start(self) -> None:
        self.model.train()

    def _loss(self, b, epoch: int | None = None):
        keys = molecule_keys(self.seed, self.current_epoch if epoch is None else epoch, b["index"]) \
            if "index" in b else None
        out = self.model.encode(b["batch"], noise_keys=keys)
        lm = self.model.decoder.loss(out["fused"], b["prompts"], b["targets"])
        return lm, out["fusion"]["balance_loss"]

    def training_step(self, b, _):
        if self.loader is not None:         # before any checkpoint of this step is written
            self.loader.mark_trained()
        lm, bal = self._loss(b)
        n = len(b["prompts"])
        self.log("train_loss", lm, prog_bar=True, batch_size=n)
        self.log("balance", bal, batch_size=n)
        return lm + bal

    def validation_step(self, b, _):
        lm, _ = self._loss(b)
        self.log("val_loss", lm, prog_bar=True, batch_size=len(b["prompts"]), sync_dist=True)

    def configure_optimizers(self):
        decay = [p for n, p in self.model.named_parameters() if p.requires_grad and p.ndim >= 2]
        no_decay = [p for n, p in self.model.named_parameters() if p.requires_grad and p.ndim < 2]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": self.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}], lr=self.lr, betas=(0.9, 0.98))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, self.lr_factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class PropertyModule(L.LightningModule):
    def __init__(self, model, lr: float = 1e-3, freeze_encoder: bool = True) -> None:
        super().__init__()
        self.model = model
        self.lr = lr
        self.freeze_encoder = freeze_encoder

    def training_step(self, b, _):
        emb = self._embed(b)
        loss = self.model.heads.loss(emb, b["y"])
        self.log("train_loss", loss, prog_bar=True, batch_size=len(b["y"]))
        return loss

    def validation_step(self, b, _):
        loss = self.model.heads.loss(self._embed(b), b["y"])
        self.log("val_loss", loss, prog_bar=True, batch_size=len(b["y"]))

    def _embed(self, b):
        if "emb" in b:
            return b["emb"]
        return self.model.encode(b["batch"])["embedding"]

    def configure_optimizers(self):
        params = self.model.heads.parameters() if self.freeze_encoder else self.model.parameters()
        return torch.optim.AdamW(params, lr=self.lr, weight_decay=0.01)


class SaveBest(L.Callback):
    """Saves the model (safetensors, via save_pretrained) whenever the monitored metric improves;
    the best value so far is part of the checkpoint, so a resumed run does not forget it."""

    def __init__(self, folder: str | Path, monitor: str = "val_loss", meta: dict | None = None) -> None:
        self.folder, self.monitor = Path(folder), monitor
        self.best = float("inf")
        self.meta = meta or {}
        self.start = time.time()

    def state_dict(self) -> dict:
        return {"best": self.best}

    def load_state_dict(self, state: dict) -> None:
        self.best = float(state.get("best", float("inf")))

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None or trainer.global_rank != 0:
            return
        value = float(value)
        if value < self.best:
            self.best = value
            model = pl_module.model
            model.meta.update(self.meta)
            model.meta.update({"trained": True, "best_" + self.monitor: value, "epoch": trainer.current_epoch,
                               "global_step": trainer.global_step,
                               "train_seconds": round(time.time() - self.start, 1)})
            model.save_pretrained(self.folder)


class StopAfter(L.Callback):
    """Ends training cleanly after ``minutes`` of this sitting, or as soon as ``stop_file`` exists
    (``touch OUT/STOP``: the run ends as if its time were up; checked after every batch).

    Unlike Lightning's ``max_time`` it keeps no state in the checkpoint: each sitting, first or
    resumed, gets its own budget."""

    def __init__(self, minutes: float, stop_file: str | Path | None = None) -> None:
        self.seconds = 60.0 * float(minutes)
        self.stop_file = Path(stop_file) if stop_file else None
        self.start = time.time()
        self.stopped_early = False

    def on_train_start(self, trainer, pl_module) -> None:
        self.start = time.time()
        if self.stop_file is not None and self.stop_file.exists():
            self.stop_file.unlink()            # a stop request of an earlier sitting

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        over = time.time() - self.start >= self.seconds
        if self.stop_file is not None and self.stop_file.exists():
            over = True
        if trainer.world_size > 1:          # every process must stop at the same step
            flag = torch.tensor(float(over), device=pl_module.device)
            over = bool(trainer.strategy.reduce(flag, reduce_op="max") > 0)
        if over:
            self.stopped_early = True
            trainer.should_stop = True


class SaveLast(L.Callback):
    """Writes ``OUT/last.ckpt`` (Lightning's full training state) for ``--resume``.

    Written at the step where training is told to stop (the time budget of ``StopAfter``, listed
    before this callback, or ``--max-steps``), so an interrupted epoch resumes mid-epoch; after
    every validation; and when training ends for any other reason (epochs done, early stopping)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.stopped_mid_epoch = False

    def _save(self, trainer) -> None:
        trainer.save_checkpoint(str(self.path))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        max_steps = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else None
        if trainer.should_stop or (max_steps is not None and trainer.global_step >= max_steps):
            self.stopped_mid_epoch = True
            self._save(trainer)

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking and not self.stopped_mid_epoch:
            self._save(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        if not self.stopped_mid_epoch:
            self._save(trainer)
