"""Lightning modules: the training loop for captions (Eq. 6 loss + SAF balance loss) and properties."""
from __future__ import annotations

import math
import time
from pathlib import Path

import lightning as L
import torch


def warmup_cosine(step: int, warmup: int, total: int, floor: float = 0.1) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


class CaptionModule(L.LightningModule):
    def __init__(self, model, lr: float = 1e-3, weight_decay: float = 0.01, warmup_steps: int = 200,
                 total_steps: int = 10000, max_seconds: float | None = None) -> None:
        super().__init__()
        self.model = model
        self.lr, self.weight_decay, self.warmup, self.total = lr, weight_decay, warmup_steps, total_steps
        self.max_seconds = max_seconds
        self.started = None

    def lr_factor(self, step: int) -> float:
        """Warm-up then cosine decay over whichever ends first: the step budget or the time budget."""
        if self.started is None:
            self.started = time.time()
        total = self.total
        if self.max_seconds and step > self.warmup:
            elapsed = time.time() - self.started
            # the step at which the time budget will run out, at the speed seen so far
            total = min(total, int(step * self.max_seconds / max(elapsed, 1e-6)))
        return warmup_cosine(step, self.warmup, max(total, self.warmup + 1))

    def on_train_epoch_start(self) -> None:
        # a model loaded with from_pretrained is in eval mode; Lightning keeps submodule modes as found
        self.model.train()

    def _loss(self, b):
        out = self.model.encode(b["batch"])
        lm = self.model.decoder.loss(out["fused"], b["prompts"], b["targets"])
        return lm, out["fusion"]["balance_loss"]

    def training_step(self, b, _):
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
    """Saves the model (safetensors, via save_pretrained) whenever the monitored metric improves."""

    def __init__(self, folder: str | Path, monitor: str = "val_loss", meta: dict | None = None) -> None:
        self.folder, self.monitor = Path(folder), monitor
        self.best = float("inf")
        self.meta = meta or {}
        self.start = time.time()

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
