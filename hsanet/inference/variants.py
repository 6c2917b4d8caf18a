"""Where each ablation variant of the paper's Table 3 comes from when a molecule is compared across
them (the app's compare view; not part of the paper's model).

* ``<ablation_dir>/<variant>`` exists: that checkpoint. The shipped ones, ``full`` included, come
  from one recipe (docs/RESULTS.md), so they compare fairly;
* ``full`` without a checkpoint: the model in use;
* ``attn`` / ``mamba`` without a checkpoint: HAP's routing forced on the model in use (its weights);
* ``nosaf`` without a checkpoint: nothing (its fusion module needs its own trained weights).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hsanet.config import ROUTINGS
from hsanet import paths


@dataclass(frozen=True)
class VariantPlan:
    variant: str
    source: str                  # "checkpoint", "model", "routing" or "unavailable"
    checkpoint: Path | None = None
    routing: str | None = None


def ablation_folder(variant: str, ablation_dir: str | Path | None = None) -> Path:
    return Path(ablation_dir or paths.ABLATION_DIR) / variant      # read at call time (tests patch it)


def variant_plan(variant: str, ablation_dir: str | Path | None = None) -> VariantPlan:
    """How to get ``variant``'s output for a molecule (see the module docstring)."""
    folder = ablation_folder(variant, ablation_dir)
    if folder.is_dir():
        return VariantPlan(variant, "checkpoint", checkpoint=folder)
    if variant == "full":
        return VariantPlan(variant, "model")
    if variant in ROUTINGS:
        return VariantPlan(variant, "routing", routing=variant)
    return VariantPlan(variant, "unavailable", checkpoint=folder)
