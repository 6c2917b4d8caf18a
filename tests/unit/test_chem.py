"""Tests of hsanet.featurizers: input parsing (parse.py) and featurization (featurize.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from rdkit import Chem

from hsanet.featurizers import MoleculeError, featurize, parse
from hsanet.featurizers.graph import (ATOM_FEATURE_DIMS, BOND_FEATURE_DIMS, DISCONNECTED, _bounded, _index,
                                   atom_features, bond_features, brics_fragments, mol_to_data)
from hsanet.featurizers.parse import DEFAULT_MAX_ATOMS

from conftest import ASPIRIN, MOLECULES


# ---- parse: errors ------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["", "   ", " \n\t "])
def test_empty_input(text):
    with pytest.raises(MoleculeError, match="empty input"):
        parse(text)


def test_none_input():
    with pytest.raises(MoleculeError, match="no molecule given"):
        parse(None)


@pytest.mark.parametrize("text, reason, plain", [
    ("C1CC", "unclosed ring", "a ring is opened but not closed"),
    ("CC(C", "extra open parentheses", "the parentheses of the branches do not match"),
    ("xyz", "syntax error", "this is not valid SMILES"),
    ("c1cccc1", "kekulize",
     "the ring bonds could not be given alternating single and double bonds (aromaticity) at atoms 0-4"),
    ("CC(C)(C)(C)(C)C", "Explicit valence", "atom 1 (C) has 6 bonds, more than this element allows"),
    ("c1ccccc1n", "marked aromatic", "an atom outside any ring is written aromatic"),
])
def test_unparsable_smiles_plain_words_then_rdkit(text, reason, plain):
    """A student's explanation first, RDKit's own message after it (in brackets), on one line."""
    with pytest.raises(MoleculeError) as exc:
        parse(text)
    msg = str(exc.value)
    assert msg.startswith(plain) and "(RDKit could not read this SMILES" in msg and reason in msg
    assert "\n" not in msg


def test_valence_error():
    with pytest.raises(MoleculeError, match=r"Explicit valence for atom # 0 C, 5"):
        parse("C(C)(C)(C)(C)C")


def test_atom_limit_default_and_configurable():
    assert DEFAULT_MAX_ATOMS == 200
    assert parse("C" * 200).num_atoms == 200
    with pytest.raises(MoleculeError, match="201 heavy atoms; the limit is 200"):
        parse("C" * 201)
    with pytest.raises(MoleculeError, match="13 heavy atoms; the limit is 10"):
        parse(ASPIRIN, max_atoms=10)


def test_reaction_smiles():
    with pytest.raises(MoleculeError, match="reaction SMILES"):
        parse("CCO>>CC=O")


def test_nul_byte():
    with pytest.raises(MoleculeError, match="NUL byte"):
        parse("CC\x00O")


def test_one_megabyte_string():
    with pytest.raises(MoleculeError, match="1,000,000 characters long"):
        parse("C" * 1_000_000)


def test_non_ascii():
    with pytest.raises(MoleculeError, match="ASCII"):
        parse("CCñ")


def test_no_heavy_atoms():
    with pytest.raises(MoleculeError, match="no heavy atoms"):
        parse("[H][H]")


# ---- parse: accepted inputs -----------------------------------------------------------------------
def test_salt_accepted_with_fragments():
    m = parse("CC(=O)[O-].[Na+]")
    assert m.num_fragments == 2
    assert m.num_atoms == 5
    assert any("disconnected" in w for w in m.warnings)


def test_molblock_input():
    block = Chem.MolToMolBlock(Chem.MolFromSmiles(ASPIRIN))
    m = parse(block)
    assert m.input_format == "molblock"
    assert m.smiles == parse(ASPIRIN).smiles == Chem.CanonSmiles(ASPIRIN)


def test_kekule_to_aromatic():
    assert parse("C1=CC=CC=C1").smiles == "c1ccccc1"
    assert parse("CC(=O)OC1=CC=CC=C1C(=O)O").smiles == parse(ASPIRIN).smiles


def test_chebi_doubled_backslash():
    doubled = "C/C=C\\\\C"            # the text holds two backslashes, as in ChEBI-20
    assert parse(doubled).smiles == parse("C/C=C\\C").smiles == "C/C=C\\C"


def test_trailing_name_ignored_and_atoms_canonical():
    m = parse("  OCC ethanol ")
    assert m.smiles == "CCO"
    assert Chem.MolToSmiles(m.mol) == m.smiles
    assert [a.GetIdx() for a in m.mol.GetAtoms()] == list(range(m.num_atoms))


# ---- featurize -------------------------------------------------------------------------------------
def test_feature_dims():
    assert ATOM_FEATURE_DIMS == [119, 5, 12, 12, 10, 6, 6, 2, 2]
    assert BOND_FEATURE_DIMS == [5, 6, 2]


@pytest.mark.parametrize("smiles", MOLECULES + ["[Fe+2]", "F/C=C/F", "[NH4+]", "C[S@@](=O)c1ccccc1", "[CH2]C"])
def test_features_within_vocab(smiles):
    data = mol_to_data(parse(smiles).mol)
    n = data.num_nodes
    assert data.x.shape == (n, 9) and data.x.dtype == torch.long
    assert (data.x >= 0).all() and (data.x < torch.tensor(ATOM_FEATURE_DIMS)).all()
    assert data.edge_attr.shape == (data.edge_index.shape[1], 3)
    if data.edge_attr.numel():
        assert (data.edge_attr >= 0).all() and (data.edge_attr < torch.tensor(BOND_FEATURE_DIMS)).all()
    assert data.dist.shape == (n * n,)
    assert data.frag.shape == (n,) and data.degree.shape == (n,)


def test_unknown_values_map_to_last_index():
    # formal charge +7 (beyond -5..5) and an atom with 11 neighbours (degree > 10), built unsanitized
    rw = Chem.RWMol()
    atom = Chem.Atom(6)
    atom.SetFormalCharge(7)
    atom.SetNoImplicit(True)
    rw.AddAtom(atom)
    mol = rw.GetMol()
    mol.UpdatePropertyCache(strict=False)
    assert atom_features(mol.GetAtomWithIdx(0))[3] == ATOM_FEATURE_DIMS[3] - 1

    rw = Chem.RWMol()
    center = rw.AddAtom(Chem.Atom(92))
    for _ in range(11):
        rw.AddBond(center, rw.AddAtom(Chem.Atom(9)), Chem.BondType.SINGLE)
    mol = rw.GetMol()
    mol.UpdatePropertyCache(strict=False)
    assert atom_features(mol.GetAtomWithIdx(0))[2] == ATOM_FEATURE_DIMS[2] - 1

    # atomic number 0 (dummy atom "*") is outside 1..118
    assert atom_features(Chem.MolFromSmiles("*C").GetAtomWithIdx(0))[0] == ATOM_FEATURE_DIMS[0] - 1
    # the helpers
    assert _index("X", ["A", "B"]) == 2 and _index("B", ["A", "B"]) == 1
    assert _bounded(3, 0, 10) == 3 and _bounded(11, 0, 10) == 11 and _bounded(-1, 0, 10) == 11
    assert _bounded(-5, -5, 5) == 0 and _bounded(7, -5, 5) == 11


def test_bond_features_values():
    mol = parse("C=CC#N").mol
    types = sorted(bond_features(b)[0] for b in mol.GetBonds())
    assert types == [0, 1, 2]                                   # single, double, triple
    benzene = parse("c1ccccc1").mol
    assert all(bond_features(b)[0] == 3 and bond_features(b)[2] == 1 for b in benzene.GetBonds())


def test_brics_fragments():
    aspirin = parse(ASPIRIN).mol
    assert Chem.BRICS.FindBRICSBonds(aspirin)                   # the ester bond is a BRICS bond
    frag = brics_fragments(aspirin)
    assert len(frag) == aspirin.GetNumAtoms()
    assert max(frag) + 1 >= 2
    assert frag[0] == 0 and sorted(set(frag)) == list(range(max(frag) + 1))
    assert brics_fragments(parse("c1ccccc1").mol) == [0] * 6
    data = mol_to_data(aspirin)
    assert data.num_frags == max(frag) + 1


def test_dist_flattened_and_disconnected():
    mol = parse("CCO").mol
    data = mol_to_data(mol)
    np.testing.assert_array_equal(data.dist.view(3, 3).numpy(), Chem.GetDistanceMatrix(mol))
    salt = mol_to_data(parse("[Na+].[Cl-]").mol)
    assert salt.dist.tolist() == [0.0, DISCONNECTED, DISCONNECTED, 0.0]
    assert salt.num_frags == 2
    single = mol_to_data(parse("C").mol)
    assert single.dist.tolist() == [0.0] and single.edge_index.shape == (2, 0)


def test_featurize_batch():
    mols = [parse(s) for s in MOLECULES]
    batch = featurize(mols)
    sizes = [m.num_atoms for m in mols]
    assert batch.num_graphs == len(mols)
    assert batch.x.shape == (sum(sizes), 9)
    assert batch.dist.numel() == sum(n * n for n in sizes)
    assert batch.num_frags.tolist() == [int(max(brics_fragments(m.mol))) + 1 for m in mols]
    assert featurize(mols[0]).num_graphs == 1


def test_a_long_bad_input_is_not_echoed_whole():
    with pytest.raises(MoleculeError) as err:
        parse("C" * 20_000 + "(", max_atoms=100_000)
    assert len(str(err.value)) < 400 and "20,001 characters" in str(err.value)
