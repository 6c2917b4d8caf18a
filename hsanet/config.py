"""One configuration object for the whole HSA-Net model (nanoGPT style).

Defaults follow the paper's predecessors where the paper is silent (docs/MODEL.md): a 5-layer
GIN with hidden size 300 (LLaMo, MolCA), 4 query tokens per level, 4 heads, 4 motif queries,
Mamba's d_state 16 / d_conv 4 / expand 2, top-2 of 4 SAF experts, load-balancing coefficient 0.01.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

VARIANTS = ("full", "attn", "mamba", "nosaf")
# the order and names of the paper's Table 3 (the ablation report and the app's compare view)
ABLATION_ORDER = ("attn", "mamba", "nosaf", "full")
VARIANT_LABELS = {"attn": "attn only", "mamba": "mamba only", "nosaf": "attn+mamba, no SAF", "full": "full HSA-Net"}
ROUTINGS = ("attn", "mamba")      # variants that are one fixed HAP routing of the full model's weights


class ConfigError(ValueError):
    """A configuration value is missing, unknown or out of range."""


@dataclass
class HSANetConfig:
    # graph encoder (GIN with edge features)
    num_layers: int = 5                 # L: GNN layers; levels 0..L are kept (L+1 levels)
    hidden: int = 300
    gnn_dropout: float = 0.0
    # projectors
    proj_dim: int = 64                  # width of projector tokens and of SAF
    num_queries: int = 4                # tokens per level (E_Attn queries = E_Mamba read-out tokens)
    num_heads: int = 4
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    dt_rank: int = 0                    # 0 -> ceil(proj_dim / 16), as mamba-ssm
    max_graph_distance: int = 8         # bond-path distances are clipped here for the Delta modulation
    # motif branch
    num_motif_queries: int = 4
    # HAP
    variant: str = "full"               # full | attn | mamba | nosaf
    gumbel_tau: float = 1.0
    # SAF
    num_experts: int = 4
    top_k: int = 2
    balance_coef: float = 0.01
    # language model
    lm_type: str = "gpt2"               # gpt2 | llama | local (a causal LM folder, see lm_path)
    lm_path: str = ""                   # local: a folder, or pkg:NAME for a model shipped as a Python package
    lm_gguf_file: str = ""              # local: a GGUF file in lm_path (dequantized on load), e.g. SmolLM2's
    lora_rank: int = 0                  # local: 0 trains the whole LM; r > 0 freezes it and trains LoRA (peft)
    lm_dim: int = 256
    lm_layers: int = 4
    lm_heads: int = 4
    lm_dropout: float = 0.0
    max_positions: int = 512
    vocab_size: int = 0                 # set from the tokenizer
    max_smiles_tokens: int = 48
    max_caption_tokens: int = 112
    retrieval_k: int = 2                # neighbour captions read by the decoder; 0 switches retrieval off
    max_ref_tokens: int = 64
    no_repeat_ngram_size: int = 0       # decoding default: block repeated n-grams (0 = off), chosen on held-out data
    rerank: bool = False                # decoding default: pick the likeliest of {generated, neighbours' captions}
    rerank_neighbours: int = 0          # neighbours whose captions are rerank candidates (0: the retrieval_k in the prompt)
    # the rerank score: weights of the model's mean token log-likelihood, the candidate's consensus with the
    # neighbours' captions and its own Tanimoto similarity (hsanet/lm/consensus.py; chosen on validation)
    rerank_likelihood: float = 1.0
    rerank_consensus: float = 0.0
    rerank_similarity: float = 0.0
    copy_mechanism: bool = False        # pointer-generator over the prompt's text tokens (see lm/decoder.py)
    instruction: str = "Describe this molecule."
    # property heads: task name -> "classification" | "regression"
    property_tasks: dict = field(default_factory=dict)
    # what the heads read: "embedding" (mean of the SAF tokens) or "levels" (mean and max pooling of
    # every GIN level, concatenated: a jumping-knowledge read-out); 0 hidden units = linear heads
    property_readout: str = "embedding"
    property_hidden: int = 256
    # limits
    max_atoms: int = 200

    def __post_init__(self) -> None:
        self.validate()

    @property
    def num_levels(self) -> int:
        return self.num_layers + 1

    @property
    def resolved_dt_rank(self) -> int:
        return self.dt_rank or math.ceil(self.proj_dim / 16)

    def validate(self) -> None:
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise ConfigError(msg)

        # types first: every field must have its default's type (ints may stand for floats)
        for f in dataclasses.fields(self):
            v, default = getattr(self, f.name), f.default if f.default is not dataclasses.MISSING else f.default_factory()
            kind = type(default)
            ok = (isinstance(v, kind) and not (kind is int and isinstance(v, bool))) or \
                 (kind is float and isinstance(v, (int, float)) and not isinstance(v, bool))
            need(ok, f"{f.name} must be of type {kind.__name__}, got {v!r}")
        need(self.variant in VARIANTS, f"variant must be one of {VARIANTS}, got {self.variant!r}")
        need(self.num_layers >= 1, "num_layers must be >= 1")
        for name in ("hidden", "proj_dim", "num_queries", "num_heads", "d_state", "d_conv", "expand",
                     "num_motif_queries", "num_experts", "lm_dim", "lm_layers", "lm_heads",
                     "max_positions", "max_atoms", "max_graph_distance", "max_smiles_tokens",
                     "max_caption_tokens", "max_ref_tokens"):
            v = getattr(self, name)
            need(isinstance(v, int) and v > 0, f"{name} must be a positive integer, got {v!r}")
        need(self.proj_dim % self.num_heads == 0, "proj_dim must be divisible by num_heads")
        need(self.lm_dim % self.lm_heads == 0, "lm_dim must be divisible by lm_heads")
        need(1 <= self.top_k <= self.num_experts, "top_k must be between 1 and num_experts")
        need(self.lm_type in ("gpt2", "llama", "local"), f"lm_type must be gpt2, llama or local, got {self.lm_type!r}")
        need(self.lm_type != "local" or bool(self.lm_path), "lm_type 'local' needs lm_path")
        need(self.retrieval_k >= 0, "retrieval_k must be >= 0")
        need(self.dt_rank >= 0 and self.no_repeat_ngram_size >= 0, "dt_rank and no_repeat_ngram_size must be >= 0")
        need(self.lora_rank >= 0, "lora_rank must be >= 0")
        need(self.lm_type == "local" or not (self.lora_rank or self.lm_gguf_file),
             "lora_rank and lm_gguf_file apply to lm_type 'local' only")
        for name in ("gnn_dropout", "lm_dropout"):
            need(0.0 <= getattr(self, name) < 1.0, f"{name} must be in [0, 1)")
        need(self.gumbel_tau > 0, "gumbel_tau must be > 0")
        need(self.balance_coef >= 0, "balance_coef must be >= 0")
        need(self.property_readout in ("embedding", "levels"),
             f"property_readout must be 'embedding' or 'levels', got {self.property_readout!r}")
        need(self.property_hidden >= 0, "property_hidden must be >= 0")
        need(self.rerank_neighbours >= 0, "rerank_neighbours must be >= 0")
        weights = (self.rerank_likelihood, self.rerank_consensus, self.rerank_similarity)
        need(all(w >= 0 for w in weights) and any(w > 0 for w in weights),
             "rerank_likelihood, rerank_consensus and rerank_similarity must be >= 0, not all 0")
        for task, kind in self.property_tasks.items():
            need(kind in ("classification", "regression"), f"property task {task!r}: kind must be classification or regression")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "HSANetConfig":
        if not isinstance(d, dict):
            raise ConfigError("config must be a JSON object")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown config keys: {', '.join(unknown)}")
        try:
            return cls(**d)
        except TypeError as exc:
            raise ConfigError(str(exc)) from exc

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "HSANetConfig":
        try:
            d = json.loads(Path(path).read_text())
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path} is not valid JSON: {exc}") from exc
        return cls.from_dict(d)
