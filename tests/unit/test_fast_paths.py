"""The inference fast paths give what the plain computation gives (docs/BENCHMARKS.md, fixes 3-8).

Each fast path is checked against a plain reference written out here: the GIN with folded batch
norms and Weisfeiler-Lehman deduplication against the layer-by-layer PyG computation, the batched
serialization against one sort per molecule, HAP's one-expert path against running both experts,
``embed`` against ``encode`` and ``slice_batch`` against featurizing the sub-list.
"""
from __future__ import annotations

import pytest
import torch

import hsanet.nn.gin as encoder_module
from hsanet import HSANet
from hsanet.featurizers import featurize, parse, slice_batch
from hsanet.nn.gin import GINEncoder, wl_colours
from hsanet.featurizers.graph import serialize_batch
from hsanet.rng import molecule_keys

from conftest import MOLECULES, small_config

TOL = dict(rtol=1e-4, atol=1e-5)
MORE = MOLECULES + ["c1ccc(cc1)C(=O)Nc1ccc(O)cc1", "OC[C@H]1OC(O)[C@H](O)[C@@H](O)[C@@H]1O",
                    "CC(C)Cc1ccc(cc1)[C@@H](C)C(=O)O", "[Cl-].[Cl-].[Ca+2]", "N#N", "O=C=O"]


def _batch(smiles=MORE):
    return featurize([parse(s) for s in smiles])


def serialize(frag: torch.Tensor, degree: torch.Tensor) -> torch.Tensor:
    """The plain scan order of one molecule: by fragment, then degree, then atom index."""
    return torch.tensor(sorted(range(len(frag)), key=lambda i: (int(frag[i]), int(degree[i]), i)))


@pytest.fixture(scope="module")
def gin():
    """A GIN with non-trivial batch-norm statistics and eps, in eval mode."""
    torch.manual_seed(1)
    enc = GINEncoder(num_layers=3, hidden=24)
    for m in enc.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.normal_(0, 0.3)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0, 0.2)
    for conv in enc.convs:
        conv.eps.data.fill_(0.3)
    return enc.eval()


def _plain_gin(enc, x, edge_index, edge_attr):
    """Hu et al.'s GIN layer by layer with PyG's GINEConv and per-column embeddings (eval mode)."""
    h = sum(emb(x[:, i]) for i, emb in enumerate(enc.atom_encoder.embeddings))
    levels = [h]
    for i, (conv, norm, bond_enc) in enumerate(zip(enc.convs, enc.norms, enc.bond_encoders)):
        e = sum(emb(edge_attr[:, j]) for j, emb in enumerate(bond_enc.embeddings))
        h = norm(conv(h, edge_index, e))
        if i < len(enc.convs) - 1:
            h = torch.relu(h)
        levels.append(h)
    return levels


@pytest.mark.parametrize("dedup, block_rows", [(False, 256), (True, 0), (True, 7)])
def test_gin_fast_path_equals_plain_layers(gin, monkeypatch, dedup, block_rows):
    """Folded batch norms, WL-deduplicated layers and the row-blocked MLP (7 rows: several blocks
    and a ragged last one) all give the plain layers' states."""
    monkeypatch.setattr(encoder_module, "DEDUP_MIN_NODES", 0 if dedup else 10 ** 9)
    monkeypatch.setattr(encoder_module, "MLP_BLOCK_ROWS", block_rows)
    b = _batch()
    with torch.no_grad():
        fast = gin(b.x, b.edge_index, b.edge_attr)
        plain = _plain_gin(gin, b.x, b.edge_index, b.edge_attr)
    assert len(fast) == len(plain) == 4
    for f, p in zip(fast, plain):
        torch.testing.assert_close(f, p, **TOL)


def test_gin_fast_path_under_cpu_autocast(gin, monkeypatch):
    """bf16 autocast (the bench's GPU section dry run on the CPU): the row-blocked MLP falls back to
    one block, since ``torch.addmm(out=...)`` is not autocast."""
    monkeypatch.setattr(encoder_module, "DEDUP_MIN_NODES", 0)
    monkeypatch.setattr(encoder_module, "MLP_BLOCK_ROWS", 7)
    b = _batch()
    with torch.no_grad():
        plain = gin(b.x, b.edge_index, b.edge_attr)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fast = gin(b.x, b.edge_index, b.edge_attr)
    for f, p in zip(fast, plain):
        torch.testing.assert_close(f.float(), p, rtol=0.1, atol=0.1)


def test_wl_colours_separate_environments_and_merge_symmetric_atoms():
    b = _batch(["c1ccccc1", "OCC"])                       # atoms 0-5 benzene, 6 O, 7 C(H2), 8 C(H3)
    colours, atom_rows, _, _ = wl_colours(b.x, b.edge_index, b.edge_attr, rounds=2)
    assert len(colours) == 3 and atom_rows.shape[1] == b.x.shape[1]
    for c in colours:
        assert len(set(c[:6].tolist())) == 1              # the six benzene carbons stay alike
    # round 0: the two sp3 carbons have different H counts already; O differs from both
    assert len(set(colours[0][6:].tolist())) == 3
    # equal colour implies equal features in round 0, and refinement only ever splits
    for a, c in zip(colours, colours[1:]):
        for i in range(len(c)):
            for j in range(len(c)):
                if c[i] == c[j]:
                    assert a[i] == a[j]


def test_wl_colours_molecule_without_bonds():
    b = _batch(["C", "[Na+].[Cl-]"])
    colours, _, _, _ = wl_colours(b.x, b.edge_index, b.edge_attr, rounds=3)
    assert len(colours) == 4 and all(torch.equal(c, colours[0]) for c in colours)


def test_batched_serialization_equals_one_sort_per_molecule():
    b = _batch()
    ser = serialize_batch(b)
    assert ser.index.shape == ser.dist.shape == ser.mask.shape
    ptr = b.ptr.tolist()
    off = 0
    for g in range(len(ptr) - 1):
        lo, n = ptr[g], ptr[g + 1] - ptr[g]
        order = serialize(b.frag[lo:lo + n], b.degree[lo:lo + n])
        d = b.dist[off:off + n * n].view(n, n)
        off += n * n
        steps = torch.ones(n)
        steps[1:] = d[order[:-1], order[1:]]
        assert ser.orders[g] == order.tolist()
        assert ser.mask[g].sum() == n and bool(ser.mask[g, -n:].all())
        assert torch.equal(ser.index[g, -n:], order + lo)
        assert torch.equal(ser.dist[g, -n:], steps)


def test_random_ties_keep_fragment_degree_order_and_follow_the_molecule_key():
    b = _batch()
    keys = molecule_keys(0, 3, torch.arange(b.num_graphs))
    ser = serialize_batch(b, random_ties=True, keys=keys)
    ptr = b.ptr.tolist()
    for g, order in enumerate(ser.orders):
        lo = ptr[g]
        assert sorted(order) == list(range(ptr[g + 1] - lo))
        key = [(int(b.frag[lo + i]), int(b.degree[lo + i])) for i in order]
        assert key == sorted(key)                             # fragment, then degree; ties shuffled
    # a molecule's order depends on its key only, not on its batch
    for g in range(b.num_graphs):
        one = serialize_batch(_batch([MORE[g]]), random_ties=True, keys=keys[g:g + 1])
        assert one.orders[0] == ser.orders[g]
    other = serialize_batch(b, random_ties=True, keys=molecule_keys(0, 4, torch.arange(b.num_graphs)))
    assert other.orders != ser.orders


@pytest.mark.parametrize("variant", ["full", "attn", "mamba"])
def test_one_expert_hap_equals_both_experts(tokenizer, variant):
    torch.manual_seed(3)
    model = HSANet(small_config(), tokenizer).eval()
    for gate in model.hap.gates:                          # route the molecules both ways
        torch.nn.init.normal_(gate.weight, std=1.0)
    b = _batch()
    with torch.no_grad():
        levels = model.encoder(b.x, b.edge_index, b.edge_attr)
        ser = serialize_batch(b)
        fast = model.hap(levels, b.batch, ser, variant=variant)
        both = model.hap(levels, b.batch, ser, variant=variant, keep_experts=True)
    assert torch.equal(fast["choice"], both["choice"])
    if variant == "full":
        assert 0 < float(fast["choice"].float().mean()) < 1
    for f, p in zip(fast["tokens"], both["tokens"]):
        torch.testing.assert_close(f, p, **TOL)


def test_embed_in_threads_equals_encode(small_model):
    smiles = (MORE * 6)[:70]                              # 70 molecules: cut into 2 parts of 35
    b = _batch(smiles)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        emb = small_model.embed(b)
        assert torch.get_num_threads() == 2                # the setting is restored
    finally:
        torch.set_num_threads(threads)
    with torch.no_grad():
        ref = small_model.encode(b)["embedding"]
    assert emb.shape == ref.shape and not emb.requires_grad
    torch.testing.assert_close(emb, ref, **TOL)


def test_slice_batch_equals_featurizing_the_part():
    b = _batch()
    part = slice_batch(b, 3, 9)
    ref = _batch(MORE[3:9])
    assert part.num_graphs == 6
    for key in ("x", "edge_index", "edge_attr", "frag", "degree", "num_frags", "dist", "batch", "ptr"):
        assert torch.equal(part[key], ref[key]), key
    with pytest.raises(ValueError, match="slice"):
        slice_batch(b, 5, 5)
    with pytest.raises(ValueError, match="slice"):
        slice_batch(b, 0, len(MORE) + 1)


def test_one_switch_turns_every_fast_path_off(small_model):
    """hsanet.nn.fast.plain(): the same analysis on the plain paths (GIN layer by layer, both HAP
    experts, E_Mamba's full scan), equal up to float32 rounding."""
    from hsanet.nn import fast

    mols = [parse(s) for s in MORE]
    fast_traces = small_model.analyze(mols, caption=False)
    with fast.plain():
        assert not fast.enabled()
        plain_traces = small_model.analyze(mols, caption=False)
    assert fast.enabled()
    for a, b in zip(fast_traces, plain_traces):
        torch.testing.assert_close(torch.from_numpy(a.embedding), torch.from_numpy(b.embedding), **TOL)
        assert a.hap_pattern == b.hap_pattern
