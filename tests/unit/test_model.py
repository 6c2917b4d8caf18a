"""Tests of the HSA-Net model: shapes, padding invariance, HAP gates, gradients, E_Mamba's structure
awareness and masking, SAF, the Trace JSON, checkpoints, routing overrides/variants and generation.

The model is untrained, so the tests check structure and exactness, not quality.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from conftest import ASPIRIN, MOLECULES, small_config

from hsanet import CheckpointError, HSANet, HSANetConfig
from hsanet.featurizers import featurize, parse
from hsanet.config import ConfigError
from hsanet.featurizers.graph import serialize_batch
from hsanet.nn.graph_mamba import GraphMambaProjector
from hsanet.nn.saf import SAF

TOL = dict(rtol=1e-5, atol=1e-5)


def _mols(smiles=MOLECULES):
    return [parse(s) for s in smiles]


def _per_graph(levels, ptr, g):
    return [h[ptr[g]:ptr[g + 1]] for h in levels]


# ---- shapes and padding ----------------------------------------------------------------------------
def _check_shapes(model, mols):
    cfg = model.config
    out = model.encode(featurize(mols))
    b, d = len(mols), cfg.proj_dim
    t = cfg.num_levels * cfg.num_queries + cfg.num_motif_queries
    assert out["tokens"].shape == (b, t, d)
    assert out["fused"].shape == (b, t, d)
    assert out["embedding"].shape == (b, d)
    assert out["hap"]["probs"].shape == (b, cfg.num_levels, 2)
    assert out["motif"].shape == (b, cfg.num_motif_queries, d)
    assert len(out["levels"]) == cfg.num_levels
    assert all(h.shape == (sum(m.num_atoms for m in mols), cfg.hidden) for h in out["levels"])
    return out


def test_shapes_small(small_model):
    with torch.no_grad():
        _check_shapes(small_model, _mols())


def _check_padding(model, mols):
    """A padded batch and one-by-one runs give the same outputs (eval mode)."""
    with torch.no_grad():
        batch = model.encode(featurize(mols), keep_experts=True)
        ptr = batch["batch"].ptr.tolist()
        for g, m in enumerate(mols):
            one = model.encode(featurize([m]), keep_experts=True)
            torch.testing.assert_close(batch["embedding"][g], one["embedding"][0], **TOL)
            torch.testing.assert_close(batch["fused"][g], one["fused"][0], **TOL)
            torch.testing.assert_close(batch["tokens"][g], one["tokens"][0], **TOL)
            torch.testing.assert_close(batch["hap"]["probs"][g], one["hap"]["probs"][0], **TOL)
            for l in range(model.config.num_levels):
                torch.testing.assert_close(batch["hap"]["attn_tokens"][l][g], one["hap"]["attn_tokens"][l][0], **TOL)
                torch.testing.assert_close(batch["hap"]["mamba_tokens"][l][g], one["hap"]["mamba_tokens"][l][0], **TOL)
            for hb, h1 in zip(_per_graph(batch["levels"], ptr, g), one["levels"]):
                torch.testing.assert_close(hb, h1, **TOL)
            assert batch["serialization"].orders[g] == one["serialization"].orders[0]


def test_padding_invariance_small(small_model):
    _check_padding(small_model, _mols())


def test_default_config_shapes_and_padding():
    """The default HSANetConfig() (GIN 5 x 300, 6 levels), graph side only (no tokenizer)."""
    torch.manual_seed(0)
    model = HSANet(HSANetConfig()).eval()
    assert model.config.num_levels == 6 and model.decoder is None
    mols = _mols(["CCO", ASPIRIN, "C", "CC(=O)[O-].[Na+]"])
    with torch.no_grad():
        out = _check_shapes(model, mols)
    assert out["fused"].shape == (4, 6 * 4 + 4, model.config.proj_dim)
    _check_padding(model, mols)


# ---- HAP gates (Eqs. 2-3) ---------------------------------------------------------------------------
def test_gate_probabilities_sum_to_one_and_argmax_choice(small_model):
    with torch.no_grad():
        out = small_model.encode(featurize(_mols()))
    probs = out["hap"]["probs"]
    torch.testing.assert_close(probs.sum(-1), torch.ones(probs.shape[:2]))
    assert ((probs >= 0) & (probs <= 1)).all()
    # inference: exactly one expert per level, the argmax of the gate (Eq. 3)
    assert torch.equal(out["hap"]["choice"], probs.argmax(-1))


def test_gradients_reach_gates_and_both_projectors(tokenizer):
    """Training mode, caption loss + SAF balance loss on 8 molecules, torch seed 0.

    With hard Gumbel-softmax each molecule uses one expert per level; over the batch both experts
    of some level are used, and the straight-through estimator gives every gate a gradient.
    """
    torch.manual_seed(0)
    model = HSANet(small_config(), tokenizer).train()
    mols = _mols()
    captions = ["The molecule is a test molecule number %d." % i for i in range(len(mols))]
    lm_loss, balance = model.caption_loss(featurize(mols), [m.smiles for m in mols], captions, [[] for _ in mols])
    assert torch.isfinite(lm_loss) and balance > 0
    (lm_loss + balance).backward()

    def nonzero(module):
        return any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())

    hap = model.hap
    assert all(nonzero(g) for g in hap.gates), "every HAP gate gets a gradient"
    assert any(nonzero(e) for e in hap.attn), "some E_Attn gets a gradient"
    assert any(nonzero(e) for e in hap.mamba), "some E_Mamba gets a gradient"
    assert any(e.mamba.gamma_raw.grad is not None and e.mamba.gamma_raw.grad.abs().sum() > 0 for e in hap.mamba)
    assert nonzero(model.fusion.router), "SAF router learns (gate-weighted Eq. 5)"
    for part in (model.encoder, model.motif, model.decoder):
        assert nonzero(part)
    assert model.level_emb.grad.abs().sum() > 0


# ---- E_Mamba: structure modulation, masking, serialization -------------------------------------------
def _mamba_projector(seed=0):
    torch.manual_seed(seed)
    return GraphMambaProjector(in_dim=8, dim=16, num_queries=4, d_state=8, max_distance=8).eval()


def test_delta_modulation_uses_distances():
    proj = _mamba_projector()
    g = torch.Generator().manual_seed(1)
    seq = torch.randn(2, 7, 8, generator=g)
    mask = torch.ones(2, 7, dtype=torch.bool)
    near = torch.ones(2, 7)
    far = torch.tensor([[1.0, 1, 4, 1, 6, 2, 3]] * 2)
    with torch.no_grad():
        a, b = proj(seq, near, mask), proj(seq, far, mask)
        assert (a - b).abs().max() > 1e-4, "changing the graph distances changes E_Mamba's tokens"
        # with gamma = softplus(gamma_raw) ~ 0 the distances have no effect: they act only through Delta
        proj.mamba.gamma_raw.fill_(-40.0)
        torch.testing.assert_close(proj(seq, near, mask), proj(seq, far, mask), **TOL)


def test_mamba_padding_steps_leave_state_untouched():
    proj = _mamba_projector()
    g = torch.Generator().manual_seed(2)
    seq = torch.randn(1, 6, 8, generator=g)
    dist = torch.tensor([[1.0, 1, 2, 1, 3, 1]])
    pad = 5
    seq_p = torch.cat([torch.randn(1, pad, 8, generator=g) * 10, seq], dim=1)     # garbage in the pads
    dist_p = torch.cat([torch.full((1, pad), 7.0), dist], dim=1)
    mask_p = torch.cat([torch.zeros(1, pad, dtype=torch.bool), torch.ones(1, 6, dtype=torch.bool)], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(proj(seq_p, dist_p, mask_p), proj(seq, dist, torch.ones(1, 6, dtype=torch.bool)),
                                   **TOL)


def test_serialization_order():
    from types import SimpleNamespace

    frag = torch.tensor([1, 0, 0, 1, 0])
    degree = torch.tensor([1, 3, 1, 2, 1])
    one = SimpleNamespace(x=torch.zeros(5, 1), ptr=torch.tensor([0, 5]), batch=torch.zeros(5, dtype=torch.long),
                          frag=frag, degree=degree, dist=torch.ones(25))
    # fragment first, then degree, ties by atom index in eval
    assert serialize_batch(one).orders[0] == [2, 4, 1, 0, 3]
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        order = serialize_batch(one, random_ties=True, generator=gen).orders[0]
        assert sorted(order[:2]) == [2, 4] and order[2:] == [1, 0, 3]


def test_serialize_batch_steps_are_graph_distances():
    mols = _mols(["CCO", ASPIRIN])
    ser = serialize_batch(featurize(mols))
    n0, n1 = mols[0].num_atoms, mols[1].num_atoms
    assert ser.mask.shape == (2, n1) and ser.mask[0].sum() == n0 and not ser.mask[0, : n1 - n0].any()
    order = ser.orders[1]
    dm = np.asarray(__import__("rdkit.Chem", fromlist=["Chem"]).GetDistanceMatrix(mols[1].mol))
    expected = [1.0] + [dm[a, b] for a, b in zip(order[:-1], order[1:])]
    assert ser.dist[1].tolist() == expected
    assert ser.index[1].tolist() == [n0 + i for i in order]


# ---- SAF (Eqs. 4-5 with the fix) ----------------------------------------------------------------------
def test_saf_weights_and_balance_loss():
    torch.manual_seed(0)
    saf = SAF(16, num_experts=4, top_k=2, balance_coef=0.01)
    z = torch.randn(3, 10, 16)
    out = saf(z)
    assert out["fused"].shape == z.shape
    top_p, top_i = out["probs"].topk(2, dim=-1)
    assert torch.equal(out["experts"], top_i)
    torch.testing.assert_close(out["weights"], top_p / top_p.sum(-1, keepdim=True))
    torch.testing.assert_close(out["weights"].sum(-1), torch.ones(3, 10))
    f = torch.bincount(top_i.reshape(-1), minlength=4).float() / top_i.numel()
    P = out["probs"].reshape(-1, 4).mean(0)
    torch.testing.assert_close(out["balance_loss"], 0.01 * 4 * (f * P).sum())


# ---- Trace ------------------------------------------------------------------------------------------
def test_trace_json(small_model):
    cfg = small_model.config
    traces = small_model.analyze(MOLECULES)
    with torch.no_grad():
        emb = small_model.encode(featurize(_mols()))["embedding"]
    for g, tr in enumerate(traces):
        obj = json.loads(json.dumps(tr.to_json(), allow_nan=False))
        for key in ("smiles", "levels", "hap", "saf", "embedding", "caption", "properties", "device",
                    "mamba_backend"):
            assert key in obj, key
        assert obj["smiles"] == parse(MOLECULES[g]).smiles
        assert [lv["level"] for lv in obj["levels"]] == list(range(cfg.num_levels))
        for lv in obj["levels"]:
            for key in ("mad", "dirichlet_energy", "effective_rank", "mean_cosine"):
                assert key in lv, key
            if tr.num_atoms > 1:
                assert lv["mad"] >= 0 and lv["dirichlet_energy"] >= 0 and lv["effective_rank"] >= 1
                assert -1 - 1e-6 <= lv["mean_cosine"] <= 1 + 1e-6
        assert [h["level"] for h in obj["hap"]] == list(range(cfg.num_levels))
        for h in obj["hap"]:
            assert abs(h["p_attn"] + h["p_mamba"] - 1) < 1e-5
            assert h["choice"] == ("attn" if h["p_attn"] >= h["p_mamba"] else "mamba")
        saf = obj["saf"]
        assert saf["num_experts"] == cfg.num_experts
        assert len(saf["tokens"]) == cfg.num_levels * cfg.num_queries + cfg.num_motif_queries
        assert saf["tokens"][0]["source"] == "level 0" and saf["tokens"][-1]["source"] == "motif"
        for tok in saf["tokens"]:
            assert len(tok["experts"]) == 2 and len(set(tok["experts"])) == 2
            assert all(0 <= e < cfg.num_experts for e in tok["experts"])
            assert len(tok["weights"]) == 2 and abs(sum(tok["weights"]) - 1) < 1e-5
        assert len(obj["embedding"]) == cfg.proj_dim
        np.testing.assert_allclose(obj["embedding"], emb[g].numpy(), atol=1e-5)
        assert isinstance(obj["caption"], str)
        assert obj["properties"] == {}
        assert obj["device"] == "cpu" and obj["mamba_backend"] == "PyTorch parallel scan"
        assert sorted(obj["mamba_order"]) == list(range(tr.num_atoms))
        assert any("untrained" in w for w in obj["warnings"])


def test_property_heads_in_trace(tokenizer):
    torch.manual_seed(0)
    model = HSANet(small_config(property_tasks={"logp": "regression", "bbbp": "classification"}), tokenizer)
    tr = model.analyze(ASPIRIN, caption=False)
    assert set(tr.properties) == {"logp", "bbbp"}
    assert 0.0 <= tr.properties["bbbp"] <= 1.0
    assert tr.caption is None and tr.to_json()["properties"].keys() == {"logp", "bbbp"}


# ---- checkpoints --------------------------------------------------------------------------------------
def test_save_load_round_trip(small_model, tiny_checkpoint):
    loaded = HSANet.from_pretrained(tiny_checkpoint, device="cpu")
    assert loaded.config == small_model.config
    a, b = small_model.analyze(ASPIRIN), loaded.analyze(ASPIRIN)
    np.testing.assert_array_equal(a.embedding, b.embedding)
    np.testing.assert_array_equal(a.fused_tokens, b.fused_tokens)
    assert a.caption == b.caption and a.hap_pattern == b.hap_pattern
    # tied LM weights are stored once and tied again on load
    assert loaded.decoder.lm.get_output_embeddings().weight is loaded.decoder.lm.get_input_embeddings().weight


def test_deferred_decoder_loads_on_first_caption(small_model, tiny_checkpoint):
    """from_pretrained(defer_decoder=True): no decoder until the first caption, built once even when
    several threads ask at once, then the same weights and captions as an eager load."""
    import copy
    from concurrent.futures import ThreadPoolExecutor

    eager = HSANet.from_pretrained(tiny_checkpoint, device="cpu")
    lazy = HSANet.from_pretrained(tiny_checkpoint, device="cpu", defer_decoder=True)
    assert lazy.decoder is None and lazy.decoder_pending and lazy.has_decoder
    copy.deepcopy(lazy)                                   # the bench and training copy models
    quick = lazy.analyze(ASPIRIN, caption=False)
    assert quick.caption is None and lazy.decoder_pending
    with ThreadPoolExecutor(4) as pool:
        traces = list(pool.map(lambda _: lazy.analyze(ASPIRIN), range(4)))
    assert not lazy.decoder_pending and lazy.decoder is not None and not lazy.decoder.training
    assert lazy.decoder.lm.get_output_embeddings().weight is lazy.decoder.lm.get_input_embeddings().weight
    want = eager.analyze(ASPIRIN).caption
    assert all(t.caption == want for t in traces)
    a, b = lazy.state_dict(), eager.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_pickle_files_refused(tiny_checkpoint, tmp_path):
    folder = shutil.copytree(tiny_checkpoint, tmp_path / "ckpt")
    (folder / "pytorch_model.bin").write_bytes(b"not really a pickle")
    with pytest.raises(CheckpointError, match=r"pickled files \(pytorch_model.bin\).*allow_pickle=True"):
        HSANet.from_pretrained(folder, device="cpu")
    assert HSANet.from_pretrained(folder, device="cpu", allow_pickle=True) is not None


def test_missing_checkpoint_parts(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        HSANet.from_pretrained(tmp_path / "nope", device="cpu")
    with pytest.raises(CheckpointError, match="needs config.json"):
        HSANet.from_pretrained(tmp_path, device="cpu")


@pytest.mark.parametrize("edit, message", [
    (lambda c: c.update(colour="blue"), "unknown config keys: colour"),
    (lambda c: c.update(variant="both"), "variant must be one of"),
    (lambda c: c.update(hidden=-3), "hidden must be a positive integer, got -3"),
    (lambda c: c.update(proj_dim=15), "proj_dim must be divisible by num_heads"),
    (lambda c: c.update(property_tasks={"x": "ranking"}), "kind must be classification or regression"),
])
def test_bad_config_json(tiny_checkpoint, tmp_path, edit, message):
    folder = shutil.copytree(tiny_checkpoint, tmp_path / "ckpt")
    cfg = json.loads((folder / "config.json").read_text())
    edit(cfg)
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match=message):
        HSANet.from_pretrained(folder, device="cpu")


def test_config_json_not_json(tiny_checkpoint, tmp_path):
    folder = shutil.copytree(tiny_checkpoint, tmp_path / "ckpt")
    (folder / "config.json").write_text("{hidden: 3")
    with pytest.raises(ConfigError, match="not valid JSON"):
        HSANet.from_pretrained(folder, device="cpu")


# ---- routing override and ablation variants ------------------------------------------------------------
def test_routing_override(small_model):
    levels = small_model.config.num_levels
    before = small_model.analyze(ASPIRIN, caption=False)
    attn = small_model.analyze(ASPIRIN, routing="attn", caption=False)
    mamba = small_model.analyze(ASPIRIN, routing="mamba", caption=False)
    assert attn.hap_pattern == "A" * levels and mamba.hap_pattern == "M" * levels
    assert all(h["choice"] == "attn" for h in attn.to_json()["hap"])
    # the override uses the same weights: forced tokens are the expert outputs of the normal run
    for l in range(levels):
        np.testing.assert_allclose(attn.levels[l].tokens, before.levels[l].attn_tokens, atol=1e-6)
        np.testing.assert_allclose(mamba.levels[l].tokens, before.levels[l].mamba_tokens, atol=1e-6)
    assert "routing forced: attn" in attn.variant
    assert small_model.config.variant == "full" and small_model.hap.variant == "full"
    with pytest.raises(ValueError, match="routing"):
        small_model.analyze(ASPIRIN, routing="both")


@pytest.mark.parametrize("variant, pattern", [("attn", "AAA"), ("mamba", "MMM"), ("nosaf", None)])
def test_variants_build_and_run(tokenizer, variant, pattern):
    torch.manual_seed(0)
    model = HSANet(small_config(variant=variant), tokenizer).eval()
    traces = model.analyze(["CCO", ASPIRIN], max_new_tokens=4)
    for tr in traces:
        obj = tr.to_json()
        assert obj["variant"] == variant and isinstance(obj["caption"], str)
        if pattern:
            assert tr.hap_pattern == pattern
            assert obj["saf"]["num_experts"] == small_config().num_experts
        else:
            assert obj["saf"]["num_experts"] == 0
            assert all(t["experts"] == [] and t["weights"] == [] for t in obj["saf"]["tokens"])
    if variant == "nosaf":
        with pytest.raises(ConfigError):
            model.set_variant("full")


def test_set_variant_refuses_nosaf(tokenizer):
    model = HSANet(small_config(), tokenizer)
    with pytest.raises(ConfigError, match="nosaf"):
        model.set_variant("nosaf")
    model.set_variant("mamba")
    assert model.analyze("CCO", caption=False).hap_pattern == "MMM"


# ---- generation -----------------------------------------------------------------------------------------
def test_batched_greedy_equals_one_by_one(small_model):
    """Prompts of different lengths are left-padded in a batch; greedy output must not change."""
    mols = _mols()
    batched = small_model.generate_captions(mols, max_new_tokens=10)
    single = [small_model.generate_captions([m], max_new_tokens=10)[0] for m in mols]
    assert len(set(single)) > 1, "the test needs molecules with different captions"
    assert batched == single


def test_greedy_cache_equals_no_cache(small_model):
    mols = _mols()
    with_cache = small_model.generate_captions(mols, max_new_tokens=10, use_cache=True)
    without = small_model.generate_captions(mols, max_new_tokens=10, use_cache=False)
    assert with_cache == without


@pytest.mark.filterwarnings("ignore:Passing `no_repeat_ngram_size`")
def test_batched_generation_llama_decoder(tokenizer):
    """The same for the Llama decoder (rotary positions), with no_repeat_ngram_size."""
    torch.manual_seed(0)
    model = HSANet(small_config(lm_type="llama"), tokenizer).eval()
    mols = _mols()
    batched = model.generate_captions(mols, max_new_tokens=10, no_repeat_ngram_size=3)
    single = [model.generate_captions([m], max_new_tokens=10, no_repeat_ngram_size=3)[0] for m in mols]
    assert len(set(single)) > 1
    assert batched == single


def test_fp16_round_trip(small_model, tmp_path):
    """save_pretrained(fp16=True) halves the stored floats (heads stay fp32) and loads back into fp32
    with outputs within fp16 rounding."""
    from safetensors import safe_open

    small_model.save_pretrained(tmp_path / "half", fp16=True)
    with safe_open(str(tmp_path / "half" / "model.safetensors"), "pt") as f:
        dtypes = {f.get_slice(k).get_dtype() for k in f.keys() if not k.startswith("heads.")}
    assert "F32" not in dtypes and "F16" in dtypes
    loaded = HSANet.from_pretrained(tmp_path / "half", device="cpu")
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    a, b = small_model.analyze(ASPIRIN, caption=False), loaded.analyze(ASPIRIN, caption=False)
    np.testing.assert_allclose(a.embedding, b.embedding, rtol=0, atol=2e-2)
    assert a.hap_pattern == b.hap_pattern


def test_training_loss_is_the_model_forward(tokenizer):
    """The loss Lightning trains (CaptionModule._loss) is HSANet.forward's: LM loss of Eq. 6 plus
    SAF's balance loss, with the same values."""
    from hsanet.training.module import CaptionModule

    torch.manual_seed(0)
    model = HSANet(small_config(), tokenizer).eval()
    mols = _mols()[:4]
    prompts = [model.decoder.prompt_ids(m.smiles, []) for m in mols]
    targets = [model.decoder.target_ids(f"The molecule is number {i}.") for i in range(len(mols))]
    b = {"batch": featurize(mols), "prompts": prompts, "targets": targets}
    lm, balance = CaptionModule(model)._loss(b)
    out = model(featurize(mols), prompts=prompts, targets=targets)
    torch.testing.assert_close(lm, out["lm_loss"])
    torch.testing.assert_close(balance, out["balance_loss"])
    torch.testing.assert_close(out["loss"], out["lm_loss"] + out["balance_loss"])
    assert torch.isfinite(out["loss"]) and out["lm_loss"] > 0
