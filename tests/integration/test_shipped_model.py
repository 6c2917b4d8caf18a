"""The shipped default (assets/hsanet-default) as a user meets it: it loads from its fp16 safetensors
into fp32, retrieves from the ChEBI-20 training pool, writes captions with its copy head and
reranking, and the deferred decoder of the app gives the same caption as the eager one."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from hsanet import HSANet
from hsanet.paths import DEFAULT_CHECKPOINT

pytestmark = pytest.mark.skipif(not (DEFAULT_CHECKPOINT / "model.safetensors").exists(),
                                reason="no embedded default in assets/")
ASPIRIN = "CC(=O)Oc1ccccc1C(=O)O"


@pytest.fixture(scope="module")
def shipped():
    return HSANet.from_pretrained(DEFAULT_CHECKPOINT, device="cpu")


def test_weights_are_stored_fp16_and_loaded_fp32(shipped):
    with safe_open(str(DEFAULT_CHECKPOINT / "model.safetensors"), "pt") as f:
        dtypes = {k: f.get_slice(k).get_dtype() for k in f.keys()}
    body = {k: v for k, v in dtypes.items() if not k.startswith("heads.") and v.startswith("F")}
    assert body and set(body.values()) == {"F16"}, "the model body is stored in fp16"
    assert {p.dtype for p in shipped.parameters()} == {torch.float32}
    assert json.loads((DEFAULT_CHECKPOINT / "metadata.json").read_text())["trained"] is True


def test_decoding_setup_is_the_documented_one(shipped):
    c = shipped.config
    assert c.copy_mechanism and shipped.copy_active, "captions come with the copy head"
    assert c.rerank and c.retrieval_k == 1
    assert shipped.retrieval is not None and len(shipped.retrieval) > 20_000, "the ChEBI-20 train split is the pool"


def test_captions_with_reranking(shipped):
    """The caption is the best-scored of the generated caption and the reranking pool's captions
    (model likelihood, consensus, similarity with the card's weights)."""
    c = shipped.config
    assert c.rerank_neighbours == 5 and c.rerank_consensus > 0 and c.rerank_similarity > 0
    trace = shipped.analyze(ASPIRIN)
    assert trace.caption and trace.caption.strip()
    assert len(trace.neighbours) == 1                     # the prompt holds the top neighbour only
    from hsanet.featurizers import featurize

    mol = trace_molecule(ASPIRIN)
    pool = shipped.references([mol.smiles], k=c.rerank_neighbours)[0]
    enc = shipped.encode(featurize([mol]))
    prompt = shipped.decoder.prompt_ids(mol.smiles, [n.caption for n in trace.neighbours])
    generated = shipped.generate_captions([mol], rerank=False)[0]
    cands = [generated] + [n.caption for n in pool]
    (best, scores), = shipped.rerank(enc["fused"], [prompt], [cands], [[None] + [n.similarity for n in pool]])
    assert trace.caption == cands[best] and scores[best] == max(scores)
    if trace.caption_source == "generated":
        assert best == 0
    else:
        assert trace.caption_source == f"neighbour {best} (reranked)"


def test_deferred_decoder_writes_the_same_caption(shipped):
    lazy = HSANet.from_pretrained(DEFAULT_CHECKPOINT, device="cpu", defer_decoder=True)
    assert lazy.decoder is None and lazy.has_decoder
    assert lazy.analyze(ASPIRIN).caption == shipped.analyze(ASPIRIN).caption


def trace_molecule(smiles: str):
    from hsanet.featurizers import parse

    return parse(smiles)
