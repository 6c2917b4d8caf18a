"""Shared fixtures: a tiny BPE tokenizer, a small untrained HSA-Net and its checkpoint folder.

Everything is session-scoped and small (hidden 32, proj_dim 16, LM width 32 with one layer) so the
model tests stay fast on a CPU. Tests must not change the shared model's state (no ``.train()``,
no weight updates): tests that train build their own model with :func:`small_config`.
"""
from __future__ import annotations

import pytest
import torch

from hsanet import HSANet, HSANetConfig
from hsanet.lm import TextTokenizer

# The test tensors are tiny: intra-op threads only add synchronization, and on a busy 2-core machine
# they slow every op down by 10-40x (measured: one encode 3 s with 2 threads, 0.07 s with 1).
torch.set_num_threads(1)

ASPIRIN = "CC(=O)Oc1ccccc1C(=O)O"
# different sizes (1 to 24 heavy atoms), a salt, rings, stereo, charges
MOLECULES = [
    "CCO",
    ASPIRIN,
    "C",
    "c1ccc2ccccc2c1",
    "CC(=O)[O-].[Na+]",
    "C[C@H](N)C(=O)O",
    "CN1C=NC2=C1C(=O)N(C(=O)N2C)C",
    "CCCCCCCCCCCCCCCC(=O)OCC(O)CO",
]

_CORPUS = [
    "The molecule is a monocarboxylic acid anion.",
    "The molecule is an aromatic ester and a member of benzoic acids.",
    "The molecule is an alpha-amino acid with a hydroxy group.",
    "It has a role as a metabolite and a solvent.",
    "It is a conjugate base of an acetic acid.",
    "The molecule is a long-chain fatty acid ester of glycerol.",
] + MOLECULES


def small_config(**overrides) -> HSANetConfig:
    """A small configuration for fast tests (2 GIN layers -> 3 levels)."""
    kw = dict(num_layers=2, hidden=32, proj_dim=16, num_queries=4, num_heads=4, d_state=8,
              num_motif_queries=4, lm_dim=32, lm_layers=1, lm_heads=2, max_positions=256,
              max_caption_tokens=12, retrieval_k=0)
    kw.update(overrides)
    return HSANetConfig(**kw)


@pytest.fixture(scope="session")
def tokenizer() -> TextTokenizer:
    return TextTokenizer.train(_CORPUS * 3, vocab_size=300, min_frequency=1)


@pytest.fixture(scope="session")
def small_model(tokenizer) -> HSANet:
    """An untrained small HSA-Net in eval mode (do not mutate)."""
    torch.manual_seed(0)
    return HSANet(small_config(), tokenizer).eval()


@pytest.fixture(scope="session")
def tiny_checkpoint(small_model, tmp_path_factory):
    """``small_model`` saved with ``save_pretrained`` (safetensors + JSON)."""
    folder = tmp_path_factory.mktemp("ckpt") / "tiny"
    small_model.save_pretrained(folder)
    return folder
