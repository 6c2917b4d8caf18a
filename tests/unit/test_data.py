"""Tests of hsanet.data: ChEBI-20 and MoleculeNet loaders, scaffold/random splits, user tables."""
from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from hsanet.data import chebi, moleculenet, splits, tables
from hsanet.data.chebi import holdout_split, load_chebi
from hsanet.data.moleculenet import load_moleculenet
from hsanet.data.splits import murcko_scaffold, random_split, scaffold_split
from hsanet.data.tables import TableError, read_table, safe_csv_cell, to_safe_csv
from hsanet.paths import data_dir

REAL = data_dir()
needs_chebi = pytest.mark.skipif(not (REAL / "chebi20" / "test.txt").exists(),
                                 reason="ChEBI-20 data not available")
needs_moleculenet = pytest.mark.skipif(not (REAL / "moleculenet" / "BBBP.csv").exists(),
                                       reason="MoleculeNet data not available")


# --- ChEBI-20 ---------------------------------------------------------------------------------

CHEBI_ROWS = [
    "CID\tSMILES\tdescription",
    '1\tCC(=O)O\tThe molecule is "acetic acid", a "simple" acid.',
    "2\tC/C=C\\\\C\tThe molecule is an alkene.",
    "3\t\tThe molecule has no SMILES.",
    "4\tC1CC\tThe molecule has an unclosed ring.",
    "5\tCCO\t   ",
    "6\tCCN\tThe molecule is ethylamine.\textra",
    "",
    "7\tc1ccccc1\tThe molecule is benzene.",
]


@pytest.fixture
def chebi_dir(tmp_path):
    (tmp_path / "chebi20").mkdir()
    (tmp_path / "chebi20" / "validation.txt").write_text("\n".join(CHEBI_ROWS) + "\n",
                                                         encoding="utf-8")
    return tmp_path


def test_chebi_reads_quotes_fixes_backslashes_and_reports_skipped(chebi_dir):
    split = load_chebi("validation", data_dir=chebi_dir)
    assert len(split) == 3
    assert split.cids == ["1", "2", "7"]
    assert split.descriptions[0] == 'The molecule is "acetic acid", a "simple" acid.'
    assert split.smiles[1] == "C/C=C\\C"
    reasons = {cid: reason for _, cid, reason in split.skipped}
    assert set(reasons) == {"3", "4", "5", "6"}
    assert reasons["3"] == "empty SMILES"
    assert "RDKit" in reasons["4"]
    assert reasons["5"] == "empty description"
    assert "fields" in reasons["6"]
    assert [row for row, _, _ in split.skipped] == [2, 3, 4, 5]  # data rows counted from 0


def test_chebi_train_missing_explains(chebi_dir):
    with pytest.raises(FileNotFoundError, match="train.txt .*HSANET_DATA"):
        load_chebi("train", data_dir=chebi_dir)
    with pytest.raises(FileNotFoundError, match="test"):
        load_chebi("test", data_dir=chebi_dir)
    with pytest.raises(ValueError, match="unknown ChEBI-20 split"):
        load_chebi("dev", data_dir=chebi_dir)


def test_chebi_bad_header(tmp_path):
    (tmp_path / "chebi20").mkdir()
    (tmp_path / "chebi20" / "test.txt").write_text("id\tsmiles\ttext\n1\tC\tx\n")
    with pytest.raises(ValueError, match="header"):
        load_chebi("test", data_dir=tmp_path)


@needs_chebi
def test_chebi_real_splits():
    valid, test = load_chebi("validation"), load_chebi("test")
    assert (len(valid), len(test)) == (3301, 3300)
    assert valid.skipped == [] and test.skipped == []
    assert not any("\\\\" in s for s in valid.smiles + test.smiles)
    assert sum("\\" in s for s in test.smiles) == 484
    assert len(set(test.cids)) == 3300 and not set(test.cids) & set(valid.cids)


def test_holdout_split_deterministic_and_disjoint():
    train, held = holdout_split(101, fraction=0.1, seed=3)
    assert len(held) == 10 and len(train) == 91
    assert np.array_equal(np.sort(np.concatenate([train, held])), np.arange(101))
    again = holdout_split(101, fraction=0.1, seed=3)
    assert np.array_equal(train, again[0]) and np.array_equal(held, again[1])
    assert not np.array_equal(held, holdout_split(101, fraction=0.1, seed=4)[1])
    with pytest.raises(ValueError):
        holdout_split(10, fraction=1.0)


# --- MoleculeNet ------------------------------------------------------------------------------

@needs_moleculenet
def test_bbbp_skips_eleven_unparseable_rows():
    ds = load_moleculenet("bbbp")
    assert ds.name == "BBBP" and ds.kind == "classification"
    assert len(ds) == 2039 and len(ds.skipped) == 11
    assert ds.y.shape == (2039, 1) and set(np.unique(ds.y)) == {0.0, 1.0}
    assert len(ds.rows) == len(ds) and 59 not in set(ds.rows.tolist())
    assert all("RDKit" in reason for _, _, reason in ds.skipped)


@needs_moleculenet
def test_multitask_and_regression_sets():
    clintox = load_moleculenet("ClinTox")
    assert clintox.task_names == ["FDA_APPROVED", "CT_TOX"]
    assert (len(clintox), len(clintox.skipped)) == (1480, 4)
    toxcast = load_moleculenet("ToxCast")
    assert toxcast.y.shape == (8576, 617) and np.isnan(toxcast.y).any()
    freesolv = load_moleculenet("FreeSolv")
    assert freesolv.kind == "regression" and freesolv.y.shape == (642, 1)
    assert not np.isnan(freesolv.y).any()


def test_moleculenet_missing_labels_line_endings_and_errors(tmp_path):
    folder = tmp_path / "moleculenet"
    folder.mkdir()
    header = ",".join(moleculenet.TOX21_TASKS) + ",mol_id,smiles"
    rows = ["1,0,,,,,,,,,,1,T1,CCO", "0,,,,,,,,,,,0,T2,C1CC", "0,1,,,,,,,,,,1,T3,c1ccccc1"]
    (folder / "Tox21.csv").write_bytes(("\r\n\n".join([header, *rows]) + "\r\n\n").encode())
    ds = load_moleculenet("tox21", data_dir=tmp_path)
    assert ds.smiles == ["CCO", "c1ccccc1"] and ds.rows.tolist() == [0, 2]
    assert ds.y.shape == (2, 12) and np.isnan(ds.y[0, 2]) and ds.y[1, 1] == 1.0
    assert ds.skipped == [(1, "C1CC", "RDKit cannot parse the SMILES")]
    with pytest.raises(KeyError, match="known"):
        load_moleculenet("nope", data_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="BBBP"):
        load_moleculenet("BBBP", data_dir=tmp_path)
    (folder / "FreeSolv.csv").write_text("iupac,smiles,expt,calc\nx,CCO,abc,1\n")
    with pytest.raises(ValueError, match="non-numeric"):
        load_moleculenet("FreeSolv", data_dir=tmp_path)


def test_registry_covers_the_ten_sets():
    assert moleculenet.list_datasets() == ["BBBP", "BACE", "ClinTox", "Tox21", "SIDER", "ToxCast",
                                           "HIV", "ESOL", "FreeSolv", "Lipophilicity"]


# --- splits -----------------------------------------------------------------------------------

SCAFFOLD_SMILES = (
    ["c1ccccc1" + s for s in ("C", "CC", "O", "N", "Cl", "F", "Br", "CO", "CN", "CCC")]  # benzene
    + ["C1CCCCC1" + s for s in ("C", "O", "N", "CC", "CO")]  # cyclohexane
    + ["c1ccncc1" + s for s in ("C", "O")]  # pyridine
    + ["C1CCOC1C", "C1CCOC1O"]  # THF
    + ["CCO", "CCN"]  # acyclic: scaffold ""
)


def _scaffold_of_part(part):
    return {murcko_scaffold(SCAFFOLD_SMILES[i]) for i in part}


def test_scaffold_split_seed0_follows_hu_et_al():
    train, valid, test = scaffold_split(SCAFFOLD_SMILES, frac=(0.6, 0.2, 0.2))
    n = len(SCAFFOLD_SMILES)  # 21: train cutoff 12.6, valid cutoff 16.8
    # groups: benzene 10 (0-9), cyclohexane 5 (10-14), and three pairs: pyridine (15, 16),
    # THF (17, 18), acyclic (19, 20). Equal sizes are ordered by the LARGER first index first
    # (Hu et al. sort by (size, first index) with reverse=True), so acyclic still fits in train.
    assert sorted(train.tolist()) == list(range(10)) + [19, 20]
    assert sorted(valid.tolist()) == list(range(10, 15))
    assert sorted(test.tolist()) == [15, 16, 17, 18]
    assert len(train) + len(valid) + len(test) == n


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scaffold_split_partition_no_shared_scaffold_and_deterministic(seed):
    parts = scaffold_split(SCAFFOLD_SMILES, frac=(0.6, 0.2, 0.2), seed=seed)
    allidx = np.concatenate(parts)
    assert np.array_equal(np.sort(allidx), np.arange(len(SCAFFOLD_SMILES)))
    scaffolds = [_scaffold_of_part(p) for p in parts]
    assert not (scaffolds[0] & scaffolds[1] or scaffolds[0] & scaffolds[2]
                or scaffolds[1] & scaffolds[2])
    again = scaffold_split(SCAFFOLD_SMILES, frac=(0.6, 0.2, 0.2), seed=seed)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again))


def test_random_scaffold_split_varies_with_seed():
    results = {tuple(sorted(scaffold_split(SCAFFOLD_SMILES, frac=(0.6, 0.2, 0.2), seed=s)[2]))
               for s in range(1, 8)}
    assert len(results) > 1


def test_scaffold_split_unparseable_is_own_group():
    train, valid, test = scaffold_split(["c1ccccc1C", "C1CC", "c1ccccc1O", "CCO"], seed=0)
    assert sorted(np.concatenate([train, valid, test]).tolist()) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="frac"):
        scaffold_split(["CCO"], frac=(0.5, 0.1, 0.1))


@needs_moleculenet
def test_scaffold_split_bbbp_sizes_match_hu_et_al():
    ds = load_moleculenet("BBBP")
    train, valid, test = scaffold_split(ds.smiles)
    assert (len(train), len(valid), len(test)) == (1631, 204, 204)
    seeded = scaffold_split(ds.smiles, seed=1)
    assert abs(len(seeded[0]) / len(ds) - 0.8) < 0.02


def test_random_split():
    train, valid, test = random_split(100, seed=1)
    assert (len(train), len(valid), len(test)) == (80, 10, 10)
    assert np.array_equal(np.sort(np.concatenate([train, valid, test])), np.arange(100))
    assert np.array_equal(train, random_split(100, seed=1)[0])
    assert not np.array_equal(train, random_split(100, seed=2)[0])
    assert len(random_split(["C"] * 10)[0]) == 8


# --- user tables ------------------------------------------------------------------------------

def test_read_table_csv_tsv_semicolon_and_bom():
    csv_text = 'name,SMILES,note\nethanol,CCO,"a, b"\nbenzene,c1ccccc1,x\n'
    table = read_table(csv_text)
    assert table.delimiter == "," and table.smiles_column == "SMILES"
    assert table.smiles == ["CCO", "c1ccccc1"] and table.rows[0]["note"] == "a, b"
    tsv = read_table(b"\xef\xbb\xbfid\tcanonical_smiles\n1\tCCO\n2\tCCN\n")
    assert tsv.delimiter == "\t" and tsv.columns == ["id", "canonical_smiles"]
    semi = read_table("Mol;value\nCCO;1,5\n")
    assert semi.delimiter == ";" and semi.smiles_column == "Mol"


def test_read_table_path_bare_list_and_explicit_column(tmp_path):
    path = tmp_path / "mols.csv"
    path.write_text("CCO\nc1ccccc1\n\nCCN\n")
    table = read_table(path)
    assert not table.has_header and table.smiles == ["CCO", "c1ccccc1", "CCN"]
    assert read_table(str(path)).smiles == table.smiles
    pick = read_table("a,b\nCCO,CCN\n", smiles_column="B")
    assert pick.smiles_column == "b" and pick.smiles == ["CCN"]
    prefer = read_table("mol,smiles\nCCO,CCN\n")
    assert prefer.smiles_column == "smiles"
    padded = read_table("smiles,x,y\nCCO\nCCN,1,2,\n")
    assert padded.rows[0] == {"smiles": "CCO", "x": "", "y": ""}


@pytest.mark.parametrize(
    ("source", "kwargs", "message"),
    [
        (b"smiles\nC\xe9O\n", {}, "not UTF-8"),
        ("smiles\nCCO\n".encode("utf-16"), {}, "UTF-16"),
        (b"PK\x03\x04rest", {}, "Excel"),
        (b"\x1f\x8b\x08\x00", {}, "gzip"),
        (b"smiles\nCC\x00O\n", {}, "binary"),
        (b"  \n\n", {}, "empty"),
        ("smiles\n", {}, "no data rows"),
        ("smiles\n" + "C\n" * 11, {"max_rows": 10}, "limit is 10"),
        ("smiles\n" + "C\n" * 100, {"max_bytes": 50}, "limit is 50 bytes"),
        ("name,value\nx,1\n", {}, "no SMILES column found"),
        ("smiles,SMILES\nC,C\n", {}, "several columns"),
        ("canonical_smiles,isomeric_smiles\nC,C\n", {}, "several columns"),
        ("smiles,x\nCCO,1\n", {"smiles_column": "structure"}, "not found"),
        ("smiles,x\nCCO,1,2\n", {}, "data row 1 has 3 cells"),
        ("smiles,x,x\nC,1,2\n", {}, "repeats column names"),
        ("smiles,,x\nC,1,2\n", {}, "empty column name"),
        ("missing_file.csv", {}, "file not found"),
    ],
)
def test_read_table_errors(source, kwargs, message):
    with pytest.raises(TableError, match=message):
        read_table(source, **kwargs)


def test_read_table_size_limit_checked_on_path(tmp_path):
    path = tmp_path / "big.csv"
    path.write_text("smiles\n" + "CCO\n" * 50)
    with pytest.raises(TableError, match="limit"):
        read_table(path, max_bytes=100)
    assert issubclass(TableError, ValueError)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"),
        ("+1+2", "'+1+2"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("-1.5", "-1.5"),
        ("+3e-2", "+3e-2"),
        ("CCO", "CCO"),
        ("C=C", "C=C"),
        (-1.5, -1.5),
        (None, ""),
    ],
)
def test_safe_csv_cell(value, expected):
    assert safe_csv_cell(value) == expected


def test_to_safe_csv_round_trip():
    text = to_safe_csv([{"smiles": "CCO", "caption": "=cmd|' /C calc'!A0"},
                        {"smiles": "C,C", "score": 0.5}])
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == ["smiles", "caption", "score"]
    assert rows[0]["caption"].startswith("'=")
    assert rows[1] == {"smiles": "C,C", "caption": "", "score": "0.5"}


def test_modules_have_docstrings():
    for module in (chebi, moleculenet, splits, tables):
        assert module.__doc__ and len(module.__doc__) > 100


def test_description_index_covers_every_split_present(tmp_path):
    from hsanet.data.chebi import description_index

    folder = tmp_path / "chebi20"
    folder.mkdir()
    rows = {"train": [("1", "OCC", "Ethanol, from train.")], "test": [("2", "c1ccccc1", "Benzene, from test."),
                                                                      ("3", "CCO", "Ethanol again.")]}
    for name, body in rows.items():
        (folder / f"{name}.txt").write_text("CID\tSMILES\tdescription\n" + "".join("\t".join(r) + "\n" for r in body))
    index = description_index(tmp_path)
    assert index["CCO"] == ("train", "1", "Ethanol, from train.")      # first split wins; SMILES canonical
    assert index["c1ccccc1"] == ("test", "2", "Benzene, from test.")
    assert description_index(tmp_path / "absent") is None
