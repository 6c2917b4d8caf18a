"""The pointer-generator copy mechanism of the caption decoder (lm/decoder.py) with retrieval."""
from __future__ import annotations

import torch

from hsanet import HSANet
from hsanet.featurizers import featurize, parse
from hsanet.retrieval import FingerprintIndex

from conftest import MOLECULES, _CORPUS, small_config


def _model(tokenizer, seed=0):
    torch.manual_seed(seed)
    index = FingerprintIndex.build(MOLECULES, _CORPUS[: len(MOLECULES)])
    return HSANet(small_config(copy_mechanism=True, retrieval_k=2, max_caption_tokens=40), tokenizer, retrieval=index)


def test_copy_loss_trains_pointer_and_gate(tokenizer):
    model = _model(tokenizer).train()
    mols = [parse(s) for s in MOLECULES[:4]]
    refs = [[n.caption for n in r] for r in model.references([m.smiles for m in mols])]
    prompts = [model.decoder.prompt_ids(m.smiles, r) for m, r in zip(mols, refs)]
    targets = [model.decoder.target_ids(_CORPUS[0]) for _ in mols]
    out = model.encode(featurize(mols))
    loss = model.decoder.loss(out["fused"], prompts, targets)
    loss.backward()
    assert torch.isfinite(loss)
    for p in (model.decoder.copy.q.weight, model.decoder.copy.k.weight, model.decoder.copy.gate.weight):
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_copy_generation_batched_equals_single_and_is_deterministic(tokenizer):
    model = _model(tokenizer).eval()
    mols = [parse(s) for s in MOLECULES[:4]]
    batched = model.generate_captions(mols, max_new_tokens=10)
    single = [model.generate_captions([m], max_new_tokens=10)[0] for m in mols]
    assert batched == single
    assert model.generate_captions(mols, max_new_tokens=10) == batched


def test_copy_learns_to_copy_a_reference(tokenizer):
    """A few steps on one example: the copy gate opens and the reference caption is reproduced."""
    model = _model(tokenizer, seed=1).train()
    mol = parse(MOLECULES[1])
    target_text = _CORPUS[1]
    prompt = model.decoder.prompt_ids(mol.smiles, [target_text, _CORPUS[2]])
    target = model.decoder.target_ids(target_text)
    batch = featurize([mol, mol])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(80):
        loss = model.decoder.loss(model.encode(batch)["fused"], [prompt, prompt], [target, target])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    out = model.decoder.generate(model.encode(featurize([mol]))["fused"], [prompt], max_new_tokens=60)[0]
    assert out == target_text


def test_rerank_returns_a_candidate_and_scores_consistently(tokenizer):
    model = _model(tokenizer).eval()
    mols = [parse(s) for s in MOLECULES[:3]]
    refs = model.references([m.smiles for m in mols])
    out = model.generate_captions(mols, max_new_tokens=10, rerank=True)
    plain = model.generate_captions(mols, max_new_tokens=10, rerank=False)
    for o, g, r in zip(out, plain, refs):
        assert o in [g] + [n.caption for n in r]
    enc = model.encode(featurize(mols[:1]))
    prompt = model.decoder.prompt_ids(mols[0].smiles, [n.caption for n in refs[0]])
    cands = [plain[0], refs[0][0].caption]
    best, scores = model.rerank(enc["fused"], [prompt], [cands])[0]
    assert scores[best] == max(scores)
    # the score is the mean token log-likelihood of the caption under the model
    nll = model.decoder.loss(enc["fused"], [prompt], [model.decoder.target_ids(cands[1])])
    assert abs(-float(nll) - scores[1]) < 1e-4
    trace = model.analyze(MOLECULES[1])
    assert trace.caption_source in (None, "generated") or trace.caption_source.startswith("neighbour")


def _greedy_reference(model, fused, prompt, max_new):
    """Greedy decoding with the pointer-generator mixture written out step by step, without a KV
    cache: the whole sequence is run again for every token."""
    dec = model.decoder
    out = []
    for _ in range(max_new):
        seq = prompt + out
        emb, _, _ = dec._embed(fused, [seq], left_pad=False)
        hid = dec.lm.base_model(inputs_embeds=emb).last_hidden_state[0]
        g = fused.shape[1]
        h, src = hid[-1], hid[g:g + len(prompt)]
        p = dec.lm.get_output_embeddings()(h).float().softmax(-1)
        a = ((dec.copy.q(h) @ dec.copy.k(src).T) / src.shape[-1] ** 0.5).float().softmax(-1)
        gate = torch.sigmoid(dec.copy.gate(h).float())
        mix = gate * p + (1 - gate) * torch.zeros_like(p).index_add_(0, torch.tensor(prompt), a)
        nxt = int(mix.argmax())
        out.append(nxt)
        if nxt == model.tokenizer.eos_id:
            break
    return model.tokenizer.decode([t for t in out if t != model.tokenizer.eos_id])


def test_copy_greedy_through_generate_equals_step_by_step_mixture(tokenizer):
    model = _model(tokenizer, seed=2).eval()
    torch.nn.init.constant_(model.decoder.copy.gate.bias, 0.0)            # half generate, half copy
    mols = [parse(s) for s in MOLECULES[:3]]
    refs = [[n.caption for n in r] for r in model.references([m.smiles for m in mols])]
    prompts = [model.decoder.prompt_ids(m.smiles, r) for m, r in zip(mols, refs)]
    fused = model.encode(featurize(mols))["fused"]
    got = model.decoder.generate(fused, prompts, max_new_tokens=12, no_repeat_ngram_size=0)
    want = [_greedy_reference(model, fused[i:i + 1], p, 12) for i, p in enumerate(prompts)]
    assert got == want


def test_beam_search_with_copy_head_changes_output_and_is_at_least_as_likely(tokenizer):
    model = _model(tokenizer, seed=2).eval()
    torch.nn.init.constant_(model.decoder.copy.gate.bias, 0.0)
    mols = [parse(s) for s in MOLECULES]
    refs = [[n.caption for n in r] for r in model.references([m.smiles for m in mols])]
    prompts = [model.decoder.prompt_ids(m.smiles, r) for m, r in zip(mols, refs)]
    fused = model.encode(featurize(mols))["fused"]
    dec = model.decoder
    kw = dict(max_new_tokens=10, no_repeat_ngram_size=0, length_penalty=0.0, return_ids=True)
    greedy = dec.generate(fused, prompts, num_beams=1, **kw)
    beam = dec.generate(fused, prompts, num_beams=4, **kw)
    assert greedy != beam                                   # beams change what a copy-head model writes

    def loglik(seqs):                                       # log p(tokens | prompt) under the mixture
        nll = dec.loss(fused, prompts, seqs, per_sample=True)
        return [-float(v) * len(t) for v, t in zip(nll, seqs)]

    for lb, lg in zip(loglik(beam), loglik(greedy)):        # length_penalty 0: beams maximize the sum
        assert lb >= lg - 1e-4, (lb, lg)


def test_evaluate_switches_copy_and_retrieval_off_at_inference(tokenizer, tmp_path, monkeypatch):
    """hsanet evaluate --no-copy / --retrieval-k 0: the same weights, captioned without them."""
    import pytest

    from hsanet.metrics.captions import VOCAB_RELATIVE
    from hsanet.paths import data_dir

    if not (data_dir() / VOCAB_RELATIVE).is_file():
        pytest.skip("shared data absent: the SciBERT vocabulary scores the captions")
    from hsanet.evaluation.evaluate import evaluate_checkpoint

    folder = tmp_path / "copy"
    _model(tokenizer).save_pretrained(folder)
    seen = []
    real = HSANet.generate_captions

    def spy(self, molecules, **kw):
        seen.append((self.decoder.copy is not None, self.references([m.smiles for m in molecules])))
        return real(self, molecules, **kw)

    monkeypatch.setattr(HSANet, "generate_captions", spy)
    kw = dict(smiles=MOLECULES[:2], references=_CORPUS[:2])
    on = evaluate_checkpoint(folder, **kw)
    off = evaluate_checkpoint(folder, copy=False, retrieval_k=0, **kw)
    assert (on["copy_mechanism"], on["retrieval_k"]) == (True, 2)
    assert (off["copy_mechanism"], off["retrieval_k"]) == (False, 0)
    assert seen[0][0] and all(len(r) == 2 for r in seen[0][1])
    assert not seen[1][0] and all(r == [] for r in seen[1][1])


def test_rerank_neighbours_widens_the_candidates_not_the_prompt(tokenizer):
    """rerank_neighbours = N: the captions of the N nearest training molecules are candidates, the
    prompt still holds the retrieval_k nearest; N = retrieval_k gives the plain reranking."""
    model = _model(tokenizer).eval()
    mols = [parse(s) for s in MOLECULES[:4]]
    k = model.config.retrieval_k
    plain = model.generate_captions(mols, max_new_tokens=10, rerank=False)
    wide = model.references([m.smiles for m in mols], k=k + 2)
    base = model.generate_captions(mols, max_new_tokens=10, rerank=True)
    model.set_inference_switches(rerank_neighbours=k + 2)
    try:
        out = model.generate_captions(mols, max_new_tokens=10, rerank=True)
        unchanged = model.generate_captions(mols, max_new_tokens=10, rerank=False)
        fused = model.encode(featurize(mols))["fused"]
        _, sources, prompt_refs = model.decode(fused, mols, max_new_tokens=10, rerank=True)
    finally:
        model.set_inference_switches(rerank_neighbours=0)
    assert unchanged == plain                                    # generation does not see the extra neighbours
    assert all(len(r) == k for r in prompt_refs)
    for o, g, w in zip(out, plain, wide):
        assert o in [g] + [n.caption for n in w]
    assert all(s == "generated" or s.startswith("neighbour") for s in sources)
    assert model.generate_captions(mols, max_new_tokens=10, rerank=True) == base
