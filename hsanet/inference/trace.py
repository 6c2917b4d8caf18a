"""The Trace: everything HSA-Net computed for one molecule, as the app and ``hsanet analyze`` show it.

``HSANet.analyze`` returns one Trace per molecule. The app draws only from it (nothing it shows is
computed in app/), and ``Trace.to_json()`` is the object ``hsanet analyze --json`` prints.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class LevelTrace:
    """One GNN level l (0 = atom embeddings): its node states, over-smoothing metrics and HAP routing."""

    level: int
    node_states: np.ndarray          # (num_atoms, hidden)
    metrics: dict[str, float]        # mad, mad_gap, dirichlet_energy, dirichlet_energy_normalized,
                                     # mean_cosine, effective_rank, numerical_rank
    p_attn: float                    # HAP gate probability of E_Attn (Eq. 2)
    p_mamba: float                   # HAP gate probability of E_Mamba
    choice: str                      # "attn" or "mamba": the expert whose tokens were used (Eq. 3)
    pooled: np.ndarray               # (hidden,) mean of the node states: the "level l pooled" map stage
    attn_tokens: np.ndarray          # (num_queries, proj_dim) E_Attn output
    mamba_tokens: np.ndarray         # (num_queries, proj_dim) E_Mamba output
    tokens: np.ndarray               # (num_queries, proj_dim) the chosen expert's tokens Z^(l)


@dataclass
class SAFToken:
    """One token entering Source-Aware Fusion and where the top-k router sent it (Eqs. 4-5)."""

    index: int
    source: str                      # "level 0".."level L" or "motif"
    experts: list[int]               # top-k expert ids
    weights: list[float]             # renormalized gate weights of those experts (sum to 1)
    probs: list[float]               # the router's full softmax over all experts


@dataclass
class Neighbour:
    """A retrieved reference molecule (fingerprint nearest neighbour) and its caption."""

    smiles: str
    caption: str
    similarity: float


@dataclass
class Trace:
    smiles: str                                  # canonical SMILES
    input: str                                   # what the user gave
    num_atoms: int
    num_fragments: int                           # disconnected components (salts, mixtures)
    atom_fragment: list[int]                     # BRICS fragment id per atom
    mamba_order: list[int]                       # the E_Mamba serialization (atom indices in scan order)
    levels: list[LevelTrace]
    saf_tokens: list[SAFToken]
    num_experts: int
    fused_tokens: np.ndarray                     # (num_tokens, proj_dim) SAF output Y
    embedding: np.ndarray                        # (proj_dim,) molecule embedding (mean of fused tokens)
    motif_tokens: np.ndarray                     # (num_motif_queries, proj_dim)
    variant: str
    trained: bool
    device: str
    mamba_backend: str
    caption: str | None = None
    caption_source: str | None = None            # "generated", or the reranked neighbour it came from
    properties: dict[str, float] = field(default_factory=dict)
    property_kinds: dict[str, str] = field(default_factory=dict)
    neighbours: list[Neighbour] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    # applicability domain (hsanet/inference/domain.py): per property task, the Tanimoto similarity to the
    # nearest molecule its head was trained on and the threshold below which that is unusual; the same
    # threshold for the caption's top neighbour (None: the checkpoint has no domain data)
    property_domain: dict[str, float] = field(default_factory=dict)
    property_domain_threshold: dict[str, float] = field(default_factory=dict)
    caption_domain_threshold: float | None = None

    def outside_domain(self) -> dict[str, bool]:
        """Per property task (and ``"caption"``): True when the molecule is less similar to that part's
        training data than its threshold."""
        out = {t: s < self.property_domain_threshold[t] for t, s in self.property_domain.items()
               if t in self.property_domain_threshold}
        if self.caption_domain_threshold is not None and self.neighbours:
            out["caption"] = self.neighbours[0].similarity < self.caption_domain_threshold
        return out

    @property
    def hap_pattern(self) -> str:
        """Routing as a string, one letter per level: A (attention) or M (Mamba)."""
        return "".join("A" if lv.choice == "attn" else "M" for lv in self.levels)

    def atom_change(self, level_a: int, level_b: int) -> np.ndarray:
        """Per-atom change of the node features from level a to level b: ||H_i^(b) - H_i^(a)||_2.

        Returns an array of shape ``(num_atoms,)``; the app colours the atoms by it.
        """
        by_level = {lv.level: lv for lv in self.levels}
        for lvl in (level_a, level_b):
            if lvl not in by_level:
                raise ValueError(f"level {lvl} not in this trace (levels {sorted(by_level)})")
        a = np.asarray(by_level[level_a].node_states, dtype=np.float64)
        b = np.asarray(by_level[level_b].node_states, dtype=np.float64)
        return np.linalg.norm(b - a, axis=1)

    def to_json(self) -> dict[str, Any]:
        """The JSON object of ``hsanet analyze --json`` (plain Python types only)."""
        return {
            "smiles": self.smiles,
            "input": self.input,
            "num_atoms": self.num_atoms,
            "num_fragments": self.num_fragments,
            "variant": self.variant,
            "trained": self.trained,
            "levels": [
                {"level": lv.level, **{k: _f(v) for k, v in lv.metrics.items()}}
                for lv in self.levels
            ],
            "hap": [
                {"level": lv.level, "p_attn": _f(lv.p_attn), "p_mamba": _f(lv.p_mamba), "choice": lv.choice}
                for lv in self.levels
            ],
            "mamba_order": list(map(int, self.mamba_order)),
            "atom_fragment": list(map(int, self.atom_fragment)),
            "saf": {
                "num_experts": self.num_experts,
                "tokens": [
                    {"index": t.index, "source": t.source, "experts": list(map(int, t.experts)),
                     "weights": [_f(w) for w in t.weights]}
                    for t in self.saf_tokens
                ],
            },
            "embedding": [_f(v) for v in np.asarray(self.embedding).ravel()],
            "caption": self.caption,
            "caption_source": self.caption_source,
            "properties": {k: _f(v) for k, v in self.properties.items()},
            "domain": {
                "property_similarity": {k: _f(v) for k, v in self.property_domain.items()},
                "property_threshold": {k: _f(v) for k, v in self.property_domain_threshold.items()},
                "caption_threshold": None if self.caption_domain_threshold is None else _f(self.caption_domain_threshold),
                "outside": self.outside_domain(),
            },
            "neighbours": [
                {"smiles": n.smiles, "caption": n.caption, "similarity": _f(n.similarity)} for n in self.neighbours
            ],
            "device": self.device,
            "mamba_backend": self.mamba_backend,
            "timings_ms": {k: _f(v) for k, v in self.timings_ms.items()},
            "warnings": list(self.warnings),
        }


def _f(v: Any) -> float | None:
    v = float(v)
    return None if not np.isfinite(v) else round(v, 6)
