"""Hardening: whatever people paste or upload must not crash, hang, leak between sessions or reach the
network.

* bad and unusual molecules through ``parse``, ``HSANet.analyze`` and ``hsanet analyze`` (clear
  ``MoleculeError`` naming the problem, exit code 2 and one stderr line, per-call time limits);
* hypothesis property tests: random text through ``parse``, random valid molecules through ``analyze``;
* ``hsanet analyze --file F --jsonl`` batches, a closed pipe;
* checkpoints (pickle refused, config validated, truncated weights) and user tables (limits, encodings,
  SMILES column, formula injection);
* offline analysis, determinism, a read-only shared model, 8 concurrent callers (threads and app
  sessions).

Everything runs on the small untrained model of conftest.py. The app test is marked ``slow`` (its
first script run imports the whole app, about a minute here).
"""
from __future__ import annotations

import ast
import hashlib
import json
import math
import shutil
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ASPIRIN, MOLECULES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rdkit import Chem

from hsanet import HSANet
from hsanet.featurizers import MoleculeError, parse
from hsanet.featurizers.parse import DEFAULT_MAX_ATOMS, MAX_INPUT_CHARS, _count_smiles_atoms
from hsanet.cli import main
from hsanet.config import ConfigError
from hsanet.data.tables import TableError, read_table, safe_csv_cell, to_safe_csv
from hsanet.models.hsanet import CheckpointError

PARSE_LIMIT_S = 2.0       # each parse
ANALYZE_LIMIT_S = 10.0    # each analyze (small model, caption included)
APP = Path(__file__).resolve().parents[2] / "app" / "main.py"

FERROCENE = "C1=CC=C[CH-]1.C1=CC=C[CH-]1.[Fe+2]"
GARBAGE_MOLBLOCK = "garbage\n  not a mol file\n\n  x  y  z V2000\nM  END\n"
BROKEN_ATOM_LINE = ("\n  RDKit          2D\n\n  1  0  0  0  0  0  0  0  0  0999 V2000\n"
                    "    0.0 0.0 0.0 Q  0  0\nM  END\n")

# input -> key words the MoleculeError message must contain (lower-cased comparison)
BAD = [
    pytest.param("", ["empty"], id="empty"),
    pytest.param("   \n\t ", ["empty"], id="whitespace"),
    pytest.param("C1CC", ["rdkit", "unclosed ring"], id="unclosed-ring"),
    pytest.param("C(C", ["rdkit", "parenthes"], id="open-branch"),
    pytest.param("Xy", ["rdkit", "syntax error"], id="not-an-element"),
    pytest.param("CC(C)(C)(C)(C)C", ["valence"], id="valence"),
    pytest.param("[CH99]", ["valence"], id="valence-hydrogens"),
    pytest.param("C" * 1_000_000, ["1,000,000 characters", f"{MAX_INPUT_CHARS:,}"], id="1MB"),
    pytest.param("CC\x00O", ["nul byte"], id="nul"),
    pytest.param("C\x01C", ["control character", "u+0001"], id="control-char"),
    pytest.param("C\x7fC", ["control character"], id="delete-char"),
    pytest.param("C☃C", ["ascii"], id="snowman"),
    pytest.param("ＣＣＯ", ["ascii"], id="full-width"),
    pytest.param("\u200bCCO", ["ascii"], id="zero-width-space"),
    pytest.param(GARBAGE_MOLBLOCK, ["mol block"], id="garbage-molblock"),
    pytest.param(BROKEN_ATOM_LINE, ["mol block", "atom line"], id="broken-molblock"),
    pytest.param("C" * 250, ["250 heavy atoms", "limit is 200"], id="250-atoms"),
    pytest.param("c1ccccc1" * 12_000, ["72000 heavy atoms", "limit is 200"], id="96k-fused-rings"),
    pytest.param("C" + "(C)" * 33_000, ["33001 heavy atoms"], id="33k-branches"),
    pytest.param("[H]" * 30_000, ["explicit hydrogens", "limit is 2000"], id="30k-hydrogens"),
    pytest.param("c1cccc1", ["kekulize"], id="kekulize"),
    pytest.param("CC>>CC", ["reaction"], id="reaction"),
    pytest.param("CC(=O)O.OCC>[H+]>CC(=O)OCC.O", ["reaction"], id="reaction-agents"),
    pytest.param("[H][H]", ["no heavy atoms"], id="hydrogen-only"),
    pytest.param("[2H][2H]", ["no heavy atoms"], id="deuterium-only"),
    pytest.param("*", ["no heavy atoms"], id="dummy-only"),
]

# valid but unusual: input -> expected number of fragments
UNUSUAL = [
    pytest.param(FERROCENE, 3, id="ferrocene"),
    pytest.param("[Na+].[Cl-]", 2, id="salt-nacl"),
    pytest.param("CC(=O)[O-].[Na+]", 2, id="salt-acetate"),
    pytest.param("CCO.O.O", 3, id="mixture"),
    pytest.param("C[Mg]Br", 1, id="grignard"),
    pytest.param("[NH2][Pt]([NH2])(Cl)Cl", 1, id="cisplatin"),
    pytest.param("Cl[Fe](Cl)(Cl)(Cl)(Cl)Cl", 1, id="hexachloroferrate"),
    pytest.param("[13CH4]", 1, id="isotope-13c"),
    pytest.param("[2H]C", 1, id="deuterium"),
    pytest.param("[CH3]", 1, id="methyl-radical"),
    pytest.param("[O]", 1, id="oxygen-atom-radical"),
    pytest.param("[NH4+]", 1, id="ammonium"),
    pytest.param("C[N+](C)(C)C", 1, id="quaternary-ammonium"),
    pytest.param("[O-][N+](=O)c1ccccc1", 1, id="nitro-zwitterion"),
    pytest.param("C", 1, id="single-carbon"),
    pytest.param("[He]", 1, id="helium"),
    pytest.param("[U]", 1, id="uranium"),
    pytest.param("C*", 1, id="dummy-atom"),
    pytest.param("F[C@H](Cl)Br", 1, id="stereo"),
    pytest.param("C/C=C\\\\C", 1, id="chebi-doubled-backslash"),
    pytest.param("C" * 200, 1, id="200-atoms-at-limit"),
    pytest.param("OCC ethanol", 1, id="trailing-name"),
]


def _timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    try:
        return fn(*args, **kwargs), time.perf_counter() - t0
    except Exception as exc:                 # noqa: BLE001 - re-raised below with the time
        exc.elapsed = time.perf_counter() - t0
        raise


def _finite_or_nan(value) -> bool:
    """Metrics may be undefined (NaN, e.g. MAD of one atom) but never infinite."""
    return value is None or not math.isinf(float(value))


def _stable_json(trace) -> dict:
    obj = trace.to_json()
    obj.pop("timings_ms")                    # wall-clock times differ between calls by design
    return obj


# ------------------------------------------------------------------------------ bad molecules
@pytest.mark.parametrize("text, words", BAD)
def test_bad_input_parse_clear_error(text, words):
    with pytest.raises(MoleculeError) as info:
        _timed(parse, text)
    assert info.value.elapsed < PARSE_LIMIT_S, f"parse took {info.value.elapsed:.2f} s"
    message = str(info.value).lower()
    for w in words:
        assert w.lower() in message, message
    assert "\n" not in message and len(message) < 400


@pytest.mark.parametrize("text, words", [p for p in BAD if p.id in
                                         {"empty", "valence", "1MB", "nul", "snowman", "garbage-molblock",
                                          "250-atoms", "96k-fused-rings", "kekulize", "reaction",
                                          "hydrogen-only"}])
def test_bad_input_analyze_clear_error(small_model, text, words):
    with pytest.raises(MoleculeError) as info:
        _timed(small_model.analyze, text)
    assert info.value.elapsed < ANALYZE_LIMIT_S
    for w in words:
        assert w.lower() in str(info.value).lower()


def test_bad_item_in_a_list_names_the_problem(small_model):
    with pytest.raises(MoleculeError, match="kekulize"):
        small_model.analyze(["CCO", "c1cccc1"])


def test_none_and_non_string(small_model):
    for value in (None, 42, b"CCO"):
        with pytest.raises(MoleculeError, match="no molecule"):
            parse(value)


@pytest.mark.parametrize("text, fragments", UNUSUAL)
def test_unusual_molecules_are_analyzed(small_model, text, fragments):
    mol, dt = _timed(parse, text)
    assert dt < PARSE_LIMIT_S
    assert mol.num_fragments == fragments
    if fragments > 1:
        assert any("disconnected" in w for w in mol.warnings)
    trace, dt = _timed(small_model.analyze, text)
    assert dt < ANALYZE_LIMIT_S, f"analyze took {dt:.2f} s"
    assert trace.smiles == mol.smiles and trace.num_fragments == fragments
    assert trace.num_atoms == mol.num_atoms == len(trace.levels[0].node_states)
    assert isinstance(trace.caption, str)
    obj = trace.to_json()
    json.dumps(obj, allow_nan=False)        # the CLI's output is strict JSON (NaN -> null)
    for level in obj["levels"]:
        assert all(_finite_or_nan(v) for v in level.values())
    for lv in trace.levels:
        assert np.isfinite(lv.node_states).all()
        assert math.isclose(lv.p_attn + lv.p_mamba, 1.0, abs_tol=1e-5)
    assert np.isfinite(trace.embedding).all()


def test_trailing_text_is_reported():
    mol = parse("OCC ethanol")
    assert mol.smiles == "CCO"
    assert any("ignored" in w and "ethanol" in w for w in mol.warnings)
    assert parse("  CCO\n").warnings == []


def test_molblock_input_with_explicit_hydrogens():
    mol = Chem.AddHs(Chem.MolFromSmiles(ASPIRIN))
    parsed = parse(Chem.MolToMolBlock(mol))
    assert parsed.input_format == "molblock" and parsed.smiles == Chem.CanonSmiles(ASPIRIN)


def test_oversized_molblock_refused_quickly():
    mol = Chem.MolFromSmiles("C" * 999)
    mol.AddConformer(Chem.Conformer(mol.GetNumAtoms()))     # zero coordinates: no slow 2D layout
    block = Chem.MolToMolBlock(mol)
    with pytest.raises(MoleculeError, match="999 heavy atoms") as info:
        _timed(parse, block)
    assert info.value.elapsed < PARSE_LIMIT_S


def test_text_atom_count_matches_rdkit():
    """The pre-RDKit size check counts atoms from the text: it must agree with RDKit, or valid
    molecules near the limit would be refused."""
    smiles = MOLECULES + [p.values[0] for p in UNUSUAL if ">" not in p.values[0]] + [
        "[Hg]", "[HH]", "[H+]", "[2H]", "[nH]1cccc1", "c1cc[se]c1", "Brc1ccc(Cl)cc1I", "[Co+3]", "[Sc]",
        "CSc1ccccc1", "B1OB(O1)O", "P(=O)(O)(O)O", "[*]CC[*]", "C%10CC%10", "[C@@H]([2H])(F)Cl"]
    for s in smiles:
        s = s.split()[0].replace("\\\\", "\\")
        mol = Chem.MolFromSmiles(s, sanitize=False)
        assert _count_smiles_atoms(s) == (mol.GetNumHeavyAtoms(), mol.GetNumAtoms()), s


def test_atom_limit_is_the_models(small_model):
    assert small_model.config.max_atoms == DEFAULT_MAX_ATOMS
    with pytest.raises(MoleculeError, match="limit is 3"):
        parse("CCCC", max_atoms=3)


# ------------------------------------------------------------------------------ property tests
# printable + control characters + a few non-ASCII ones
_ANY_CHAR = st.characters(codec="utf-8", categories=("L", "N", "P", "S", "Z", "Cc"))
_SMILES_CHARS = "CNOSPFIBrlcnosp()[]=#$:123456789%@+-/\\.*H> \t\n"


@settings(max_examples=150, deadline=PARSE_LIMIT_S * 1000, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(_ANY_CHAR, max_size=80), st.text(_SMILES_CHARS, max_size=60)))
def test_random_text_parse_only_molecule_error(text):
    try:
        mol = parse(text)
    except MoleculeError as exc:
        assert str(exc)
    else:
        assert mol.num_atoms >= 1 and Chem.MolFromSmiles(mol.smiles) is not None


_FRAGMENTS = ["C", "CC", "O", "N", "c1ccccc1", "C(=O)O", "C(F)(F)F", "[O-]", "[NH3+]", "S(=O)(=O)",
              "C1CC1", "c1ccncc1", "Cl", "Br", "[Si](C)(C)", "P(=O)(O)", "[13CH2]", "C#N", "C=C", "n1ccnc1"]


@st.composite
def _random_molecule(draw):
    """A chain of fragments (each bonded to the next), sometimes a second component (a salt)."""
    parts = draw(st.lists(st.sampled_from(_FRAGMENTS), min_size=1, max_size=6))
    smiles = parts[0] + "".join(f"({p})" for p in parts[1:-1]) + (parts[-1] if len(parts) > 1 else "")
    if draw(st.booleans()):
        smiles += "." + draw(st.sampled_from(["[Na+]", "[Cl-]", "O", "[K+]", "CCO"]))
    if Chem.MolFromSmiles(smiles) is None:
        smiles = "C" + "".join(f"({p})" for p in parts[:3])   # RDKit may refuse a valence: fall back
    return smiles if Chem.MolFromSmiles(smiles) is not None else "CCO"


@settings(max_examples=20, deadline=ANALYZE_LIMIT_S * 1000, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(smiles=_random_molecule())
def test_random_valid_molecules_analyze(small_model, smiles):
    trace = small_model.analyze(smiles)
    assert trace.smiles == parse(smiles).smiles
    assert isinstance(trace.caption, str)
    for lv in trace.levels:
        assert np.isfinite(lv.node_states).all()
        assert all(_finite_or_nan(v) for v in lv.metrics.values())
    assert np.isfinite(trace.embedding).all()


# ------------------------------------------------------------------------------ command line
def _cli(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("text, word", [
    ("", "smiles"), ("C1CC", "unclosed ring"), ("CC(C)(C)(C)(C)C", "valence"), ("C" * 1_000_000, "characters"),
    ("C\x00C", "nul"), ("C☃C", "ascii"), ("c1cccc1", "kekulize"), ("CC>>CC", "reaction"), ("C" * 300, "heavy atoms"),
    ("[H][H]", "no heavy atoms"), (GARBAGE_MOLBLOCK, "mol block"),
])
def test_cli_bad_molecule_exit_2_one_line(capsys, tiny_checkpoint, text, word):
    rc, out, err = _cli(capsys, "analyze", text, "--checkpoint", tiny_checkpoint)
    assert rc == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("hsanet analyze: error: ") and word in lines[0].lower()
    assert "Traceback" not in err and len(lines[0]) < 500


def test_cli_unusual_molecule_exit_0(capsys, tiny_checkpoint):
    rc, out, err = _cli(capsys, "analyze", FERROCENE, "--json", "--checkpoint", tiny_checkpoint)
    assert rc == 0, err
    obj = json.loads(out)
    assert obj["num_fragments"] == 3 and any("disconnected" in w for w in obj["warnings"])


def test_cli_jsonl_batch_mixed_lines(capsys, tiny_checkpoint, small_model, tmp_path):
    lines = ["CCO", "", "C1CC", "   ", "C" * 1_000_000, "[Na+].[Cl-]", "C\x00C", "CC>>CC", ASPIRIN, "c1cccc1"]
    f = tmp_path / "mols.txt"
    data = "\n".join(lines).encode() + b"\nCC\xff\xfeO\r\nCCN\r\n"     # invalid UTF-8, CRLF line ends
    f.write_bytes(data)
    rc, out, err = _cli(capsys, "analyze", "--file", f, "--jsonl", "--checkpoint", tiny_checkpoint)
    assert rc == 0, err
    assert "Traceback" not in err
    objs = [json.loads(line) for line in out.splitlines()]
    expected = [x for x in lines if x.strip()] + ["CC\ufffd\ufffdO", "CCN"]
    assert len(objs) == len(expected)
    good = {"CCO", "[Na+].[Cl-]", ASPIRIN, "CCN"}
    for line, obj in zip(expected, objs):
        assert obj["input"] == line
        if line in good:
            assert "error" not in obj and obj["smiles"] == parse(line).smiles
            assert obj["caption"] == small_model.analyze(line).caption
        else:
            assert set(obj) == {"input", "error"} and obj["error"]
    errors = {o["input"][:10]: o["error"] for o in objs if "error" in o}
    assert "characters" in errors["C" * 10] and "NUL" in errors["C\x00C"]
    assert "reaction" in errors["CC>>CC"] and "ASCII" in errors["CC\ufffd\ufffdO"]


def test_cli_jsonl_without_file_is_one_json_line(capsys, tiny_checkpoint):
    rc, out, _ = _cli(capsys, "analyze", "CCO", "--jsonl", "--no-caption", "--checkpoint", tiny_checkpoint)
    assert rc == 0 and len(out.splitlines()) == 1 and json.loads(out)["smiles"] == "CCO"


def test_cli_broken_pipe_is_quiet(capsys, tiny_checkpoint, tmp_path, monkeypatch):
    """`hsanet analyze --file F | head -1`: the reader goes away; no traceback, no error line."""
    import sys

    class ClosedPipe:
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            raise BrokenPipeError(32, "Broken pipe")

        def fileno(self):
            raise OSError("no file descriptor")

    f = tmp_path / "mols.txt"
    f.write_text("CCO\nCCN\n")
    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    rc = main(["analyze", "--file", str(f), "--no-caption", "--checkpoint", str(tiny_checkpoint)])
    _, err = capsys.readouterr()
    assert rc == 141 and err == ""


def test_cli_unreadable_file_and_truncated_checkpoint(capsys, tiny_checkpoint, tmp_path):
    rc, _, err = _cli(capsys, "analyze", "--file", tmp_path, "--checkpoint", tiny_checkpoint)  # a folder
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "cannot read" in err
    ckpt = shutil.copytree(tiny_checkpoint, tmp_path / "truncated")
    weights = ckpt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    rc, _, err = _cli(capsys, "analyze", "CCO", "--checkpoint", ckpt)
    assert rc == 2 and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and "checkpoint" in err


# ------------------------------------------------------------------------------ checkpoints
@pytest.fixture
def ckpt_copy(tiny_checkpoint, tmp_path):
    return Path(shutil.copytree(tiny_checkpoint, tmp_path / "ckpt"))


@pytest.mark.parametrize("name", ["pytorch_model.bin", "model.pt", "last.ckpt", "weights.pkl"])
def test_pickled_file_refused_unless_allowed(ckpt_copy, name):
    (ckpt_copy / name).write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(CheckpointError, match="pickle") as info:
        HSANet.from_pretrained(ckpt_copy, device="cpu")
    assert name in str(info.value) and "allow_pickle" in str(info.value)
    model = HSANet.from_pretrained(ckpt_copy, device="cpu", allow_pickle=True)   # the user's explicit choice
    assert not model.training




@pytest.mark.parametrize("change, key", [
    ({"hidden": "300"}, "hidden"),
    ({"hidden": -1}, "hidden"),
    ({"proj_dim": 0}, "proj_dim"),
    ({"num_heads": 2.5}, "num_heads"),
    ({"num_layers": -3}, "num_layers"),
    ({"variant": "best"}, "variant"),
    ({"lm_type": "bert"}, "lm_type"),
    ({"top_k": 9}, "top_k"),
    ({"retrieval_k": -1}, "retrieval_k"),
    ({"property_tasks": {"logS": "ranking"}}, "logS"),
    ({"not_a_key": 1}, "not_a_key"),
    pytest.param({"num_layers": "5"}, "num_layers"),
    pytest.param({"retrieval_k": "2"}, "retrieval_k"),
    pytest.param({"top_k": "2"}, "top_k"),
    pytest.param({"gnn_dropout": "high"}, "gnn_dropout"),
    pytest.param({"lm_dropout": 2.0}, "lm_dropout"),
    pytest.param({"gumbel_tau": -1.0}, "gumbel_tau"),
    pytest.param({"max_caption_tokens": -5}, "max_caption_tokens"),
    pytest.param({"max_graph_distance": -2}, "max_graph_distance"),
    pytest.param({"hidden": True}, "hidden"),
    pytest.param({"property_tasks": ["logS"]}, "property_tasks"),
])
def test_bad_config_names_the_key(ckpt_copy, change, key):
    cfg = json.loads((ckpt_copy / "config.json").read_text())
    cfg.update(change)
    (ckpt_copy / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match=key):
        HSANet.from_pretrained(ckpt_copy, device="cpu")


@pytest.mark.parametrize("text, words", [("[1, 2]", "JSON object"), ("{not json", "not valid JSON")])
def test_config_not_an_object(ckpt_copy, text, words):
    (ckpt_copy / "config.json").write_text(text)
    with pytest.raises(ConfigError, match=words):
        HSANet.from_pretrained(ckpt_copy, device="cpu")


def test_missing_files_are_checkpoint_errors(ckpt_copy, tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        HSANet.from_pretrained(tmp_path / "nowhere", device="cpu")
    (ckpt_copy / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model.safetensors"):
        HSANet.from_pretrained(ckpt_copy, device="cpu")


@pytest.mark.parametrize("keep", [0, 10, 1000, "half"])
def test_truncated_weights_checkpoint_error(ckpt_copy, keep):
    weights = ckpt_copy / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[:len(data) // 2 if keep == "half" else keep])
    with pytest.raises(CheckpointError, match="model.safetensors"):
        HSANet.from_pretrained(ckpt_copy, device="cpu")


# ------------------------------------------------------------------------------ user tables
def test_table_limits_and_errors(tmp_path):
    with pytest.raises(TableError, match="limit is 5,000,000 bytes"):
        read_table(b"smiles\n" + b"C\n" * 2_600_000)
    with pytest.raises(TableError, match="limit is 1,000"):
        read_table("smiles\n" + "CCO\n" * 1001)
    with pytest.raises(TableError, match="not UTF-8"):
        read_table("smiles,name\nCCO,éthanol\n".encode("latin-1"))
    with pytest.raises(TableError, match="UTF-16"):
        read_table("smiles\nCCO\n".encode("utf-16"))
    with pytest.raises(TableError, match="NUL"):
        read_table(b"smiles\nCC\x00O\n")
    with pytest.raises(TableError, match="Excel"):
        read_table(b"PK\x03\x04rest of a zip")
    with pytest.raises(TableError, match="no SMILES column"):
        read_table("name,value\nethanol,1\n")
    with pytest.raises(TableError, match="several columns"):
        read_table("canonical_smiles,isomeric_smiles\nCCO,CCO\n")
    with pytest.raises(TableError, match="empty"):
        read_table(b"")
    big = tmp_path / "big.csv"
    big.write_bytes(b"smiles\n" + b"C" * 6_000_000)
    with pytest.raises(TableError, match="limit"):
        read_table(big)


def test_table_bad_rows_do_not_fail_the_batch(small_model):
    """Bad cells are read as text; each row's analysis error is the caller's per-row error column."""
    table = read_table("smiles,name\nCCO,ethanol\nC1CC,broken\n=cmd|' /C calc'!A0,formula\nc1ccccc1,benzene\n")
    assert table.smiles_column == "smiles" and len(table) == 4
    rows = []
    for row, smi in zip(table.rows, table.smiles):
        try:
            rows.append({**row, "caption": small_model.analyze(smi, caption=False).smiles, "error": ""})
        except MoleculeError as exc:
            rows.append({**row, "caption": "", "error": str(exc)})
    assert [bool(r["error"]) for r in rows] == [False, True, True, False]
    text = to_safe_csv(rows)
    assert "'=cmd" in text and "\n=cmd" not in text


@pytest.mark.parametrize("cell, safe", [
    ("=1+1", "'=1+1"), ("+cmd", "'+cmd"), ("-2+3+cmd|' /C calc'!A0", "'-2+3+cmd|' /C calc'!A0"),
    ("@SUM(A1)", "'@SUM(A1)"), ("\t=x", "'\t=x"), ("\r=x", "'\r=x"),
    ("-1.5", "-1.5"), ("+3", "+3"), ("CCO", "CCO"), ("[O-]C", "[O-]C"), (-2.0, -2.0), (None, ""),
])
def test_formula_injection_neutralized(cell, safe):
    assert safe_csv_cell(cell) == safe


def test_safe_csv_header_and_cells():
    text = to_safe_csv([{"=bad": "@x", "smiles": "C=C"}])
    assert text.splitlines() == ["'=bad,smiles", "'@x,C=C"]


# ------------------------------------------------------------------------------ offline
def test_offline_analyze_and_caption(tiny_checkpoint, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("network access attempted")

    for name in ("socket", "create_connection", "getaddrinfo"):
        monkeypatch.setattr(socket, name, no_network)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    model = HSANet.from_pretrained(tiny_checkpoint, device="cpu")
    trace = model.analyze(ASPIRIN, caption=True)
    assert isinstance(trace.caption, str)
    assert model.generate_captions([parse("CCO")]) == [model.analyze("CCO").caption]


# ------------------------------------------------------------------------------ determinism, read-only
def _state_hash(model) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def test_deterministic_trace_and_caption(small_model):
    a, b = small_model.analyze(ASPIRIN), small_model.analyze(ASPIRIN)
    assert _stable_json(a) == _stable_json(b)
    assert a.caption == b.caption
    for la, lb in zip(a.levels, b.levels):
        assert np.array_equal(la.node_states, lb.node_states)
        assert np.array_equal(la.tokens, lb.tokens)
    assert np.array_equal(a.fused_tokens, b.fused_tokens)
    # the same molecule in a batch with others gives the same routing and caption
    batch = small_model.analyze(["CCO", ASPIRIN])
    assert batch[1].caption == a.caption and batch[1].hap_pattern == a.hap_pattern
    assert np.allclose(batch[1].embedding, a.embedding, atol=1e-5)


def test_analyze_leaves_the_model_untouched(small_model):
    before = _state_hash(small_model)
    flags = {n: p.requires_grad for n, p in small_model.named_parameters()}
    variant = small_model.config.variant
    assert torch.is_grad_enabled()
    small_model.analyze(["CCO", FERROCENE], routing="mamba")
    small_model.analyze(ASPIRIN, num_beams=2)
    try:
        small_model.analyze(["CCO", "C1CC"])
    except MoleculeError:
        pass
    assert torch.is_grad_enabled()
    assert not small_model.training and not any(m.training for m in small_model.modules())
    assert {n: p.requires_grad for n, p in small_model.named_parameters()} == flags
    assert all(p.grad is None for p in small_model.parameters())
    assert small_model.config.variant == variant and small_model.hap.variant == variant
    assert _state_hash(small_model) == before


# ------------------------------------------------------------------------------ concurrency
def test_eight_threads_each_get_their_own_result(small_model):
    smiles = MOLECULES
    assert len(smiles) == 8
    sequential = [_stable_json(small_model.analyze(s)) for s in smiles]
    before = _state_hash(small_model)
    with ThreadPoolExecutor(max_workers=8) as pool:
        concurrent = list(pool.map(lambda s: _stable_json(small_model.analyze(s)), smiles))
    for s, a, b in zip(smiles, sequential, concurrent):
        assert b["input"] == s and a == b, s
    assert _state_hash(small_model) == before


@pytest.mark.slow
@pytest.mark.skipif(not APP.is_file(), reason="app not present")
def test_eight_app_sessions_at_once(tiny_checkpoint, small_model, monkeypatch, tmp_path):
    """8 AppTest sessions, each given a different molecule and run at the same time, each show their
    own canonical SMILES and caption."""
    from streamlit.testing.v1 import AppTest

    from hsanet import paths

    monkeypatch.setenv("HSANET_CHECKPOINT", str(tiny_checkpoint))
    monkeypatch.delenv("HSANET_TIME_BUDGET_S", raising=False)
    monkeypatch.setattr(paths, "REFERENCE_DIR", tmp_path / "no-reference")
    monkeypatch.setattr(paths, "ABLATION_DIR", tmp_path / "no-ablations")
    # most give a non-empty (untrained, nonsense) caption with the small model; two give an empty one
    smiles = [ASPIRIN, "C[N+](C)(C)C", "CN1C=NC2=C1C(=O)N(C(=O)N2C)C", "C[C@H](N)C(=O)O", "OC(=O)CCC(=O)O",
              "FC(F)(F)c1ccccc1", "CCO", "c1ccncc1"]
    # AppTest compiles the script on every run with a fresh ScriptCache (the server shares one, behind a
    # lock), and ast.parse on CPython 3.11 is not thread-safe: concurrent parses can fail with
    # "AST constructor recursion depth mismatch". Serialize parsing, as the server's cache does.
    parse_lock = threading.RLock()
    real_parse = ast.parse

    def locked_parse(*args, **kwargs):
        with parse_lock:
            return real_parse(*args, **kwargs)

    monkeypatch.setattr(ast, "parse", locked_parse)
    sessions = [AppTest.from_file(str(APP), default_timeout=240) for _ in smiles]
    for at in sessions:
        at.run()
        assert not at.exception, [e.value for e in at.exception]
    for at, s in zip(sessions, smiles):
        at.text_input(key="smiles_input").set_value(s)
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda at: at.run(), sessions))
    for at, s in zip(sessions, smiles):
        assert not at.exception, [e.value for e in at.exception]
        canonical = parse(s).smiles
        texts = "\n".join(str(m.value) for m in at.markdown)
        assert f"**Canonical SMILES** `{canonical}`" in texts
        others = {parse(o).smiles for o in smiles} - {canonical}
        assert not any(f"`{o}`" in texts for o in others), s
        assert at.session_state["smiles_input"] == s                 # each session keeps its own input
        caption = small_model.analyze(canonical, max_new_tokens=small_model.config.max_caption_tokens).caption
        if caption.strip():
            assert f"> {caption}" in texts, s
        else:
            assert any("empty caption" in i.value for i in at.info), s
