"""Lightning modules: the training loop for captions (Eq. 6 loss + SAF balance loss) and properties.

Everything a resumed run needs is in Lightning's checkpoint: weights, optimizer, the LR schedule
(its step and, here, its planned horizon), the epoch and the batches trained in it (the data
loader's state, ``training/data.py``), early stopping and the best score so far (``SaveBest``).
The training noise of a molecule is keyed by (seed, epoch, dataset index) (``hsanet.rng``), so it
does not depend on the batch, the process or the sitting.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
import torch

from hsanet.rng import molecule_keys


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
        out = self.model(b["batch"], prompts=b["prompts"], targets=b["targets"], noise_keys=keys)
        return out["lm_loss"], out["balance_loss"]

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

    def on_validation_epoch_start(self) -> None:
        self._val = []

    def validation_step(self, b, _):
        emb = self._embed(b)
        loss = self.model.heads.loss(emb, b["y"])
        self.log("val_loss", loss, prog_bar=True, batch_size=len(b["y"]))
        self._val.append((b["y"].detach().cpu(), self.model.heads.predict(emb).detach().float().cpu()))

    def on_validation_epoch_end(self) -> None:
        """``val_auc``: ROC-AUC over the tasks with both classes (Hu et al.), the selection metric."""
        from hsanet.metrics.properties import roc_auc_multitask

        y = torch.cat([v[0] for v in self._val]).numpy()
        pred = torch.cat([v[1] for v in self._val]).numpy()
        score, _ = roc_auc_multitask(y, pred)
        self.log("val_auc", float(score) if score == score else float("-inf"))

    def _embed(self, b):
        if "emb" in b:
            return b["emb"]
        return self.model.encode(b["batch"])["embedding"]

    def configure_optimizers(self):
        params = self.model.heads.parameters() if self.freeze_encoder else self.model.parameters()
        return torch.optim.AdamW(params, lr=self.lr, weight_decay=0.01)


class SaveBest(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` (``monitor`` minimized, the best one kept) that writes the best
    model as a checkpoint folder (safetensors + JSON, ``save_pretrained``) instead of a pickled
    ``.ckpt``; the best score so far is in Lightning's checkpoint, so a resumed run does not forget it."""

    def __init__(self, folder: str | Path, monitor: str = "val_loss", meta: dict | None = None) -> None:
        super().__init__(dirpath=str(folder), filename="best", monitor=monitor, mode="min", save_top_k=1,
                         save_last=False, save_on_train_epoch_end=False, enable_version_counter=False)
        self.folder = Path(folder)
        self.meta = meta or {}
        self.start = time.time()

    @property
    def best(self) -> float:
        return float(self.best_model_score) if self.best_model_score is not None else float("inf")

    def _save_checkpoint(self, trainer, filepath: str) -> None:
        if trainer.is_global_zero:
            model = trainer.lightning_module.model
            model.meta.update(self.meta)
            model.meta.update({"trained": True, "best_" + self.monitor: float(self.current_score),
                               "epoch": trainer.current_epoch, "global_step": trainer.global_step,
                               "train_seconds": round(time.time() - self.start, 1)})
            model.save_pretrained(self.folder)
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath

    def _remove_checkpoint(self, trainer, filepath: str) -> None:
        """Nothing to remove: the one folder is overwritten in place."""

    def on_train_start(self, trainer, pl_module) -> None:
        """On a resumed run, the best score is the better of the restored one and the saved folder's.
        (Lightning runs checkpoint callbacks last, so the ``last.ckpt`` that SaveLast writes after a
        validation holds the score from before that validation's save.)"""
        super().on_train_start(trainer, pl_module)
        if trainer.ckpt_path is None:
            return
        try:
            saved = json.loads((self.folder / "metadata.json").read_text()).get("best_" + self.monitor)
        except (OSError, ValueError):
            return
        if saved is not None and float(saved) < self.best:
            path = str(self.folder / "best.ckpt")
            score = torch.tensor(float(saved))
            self.best_k_models = {path: score}
            self.best_model_path = self.kth_best_model_path = path
            self.best_model_score = self.kth_value = score


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
