"""Tests of ``hsanet analyze`` (hsanet/cli/): JSON output, JSON lines for --file, exit code 2 and a
one-line message for bad input.

Most tests call ``hsanet.cli.main`` in-process (importing torch in a subprocess takes ~10 s here);
one runs the installed ``hsanet`` console script to check the real exit code and stderr.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ASPIRIN

from hsanet.cli import main

KEYS = ("smiles", "levels", "hap", "saf", "embedding", "caption", "properties", "device", "mamba_backend")


def _run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def _assert_one_line_error(err: str, *fragments: str):
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("hsanet analyze: error: ")
    assert "Traceback" not in err
    for f in fragments:
        assert f in lines[0]


def test_analyze_json(capsys, tiny_checkpoint, small_model):
    rc, out, err = _run(capsys, "analyze", ASPIRIN, "--json", "--checkpoint", str(tiny_checkpoint))
    assert rc == 0
    lines = out.strip().splitlines()
    assert len(lines) == 1
    obj = json.loads(lines[0])
    for key in KEYS:
        assert key in obj, key
    assert obj["smiles"] == "CC(=O)Oc1ccccc1C(=O)O"
    assert len(obj["levels"]) == len(obj["hap"]) == small_model.config.num_levels
    assert {"level", "mad", "dirichlet_energy", "effective_rank", "mean_cosine"} <= set(obj["levels"][0])
    assert {"level", "p_attn", "p_mamba", "choice"} <= set(obj["hap"][0])
    assert obj["saf"]["num_experts"] == small_model.config.num_experts
    tok = obj["saf"]["tokens"][0]
    assert {"source", "experts", "weights"} <= set(tok) and len(tok["experts"]) == 2
    assert abs(sum(tok["weights"]) - 1) < 1e-5
    # the CLI loads the same weights: same embedding and caption as the in-memory model
    trace = small_model.analyze(ASPIRIN)
    assert obj["caption"] == trace.caption
    assert obj["embedding"] == pytest.approx(trace.embedding.tolist(), abs=1e-5)


def test_analyze_text(capsys, tiny_checkpoint, small_model):
    rc, out, _ = _run(capsys, "analyze", "CCO", "--checkpoint", str(tiny_checkpoint), "--no-caption")
    assert rc == 0
    assert out.startswith("SMILES     CCO  (3 heavy atoms, 1 fragment(s))")
    assert "caption    None" in out
    assert sum(line.split()[0].isdigit() for line in out.splitlines()) == small_model.config.num_levels


def test_analyze_variant_flag(capsys, tiny_checkpoint, small_model):
    rc, out, _ = _run(capsys, "analyze", "CCO", "--json", "--no-caption", "--variant", "attn",
                      "--checkpoint", str(tiny_checkpoint))
    assert rc == 0
    assert [h["choice"] for h in json.loads(out)["hap"]] == ["attn"] * small_model.config.num_levels


def test_analyze_file_json_lines(capsys, tiny_checkpoint, tmp_path):
    f = tmp_path / "mols.txt"
    f.write_text(f"{ASPIRIN}\n\nC1CC\nCCO\n")
    rc, out, err = _run(capsys, "analyze", "--file", str(f), "--checkpoint", str(tiny_checkpoint), "--no-caption")
    assert rc == 0
    objs = [json.loads(line) for line in out.strip().splitlines()]
    assert len(objs) == 3                               # the blank line is skipped
    assert objs[0]["smiles"] == "CC(=O)Oc1ccccc1C(=O)O" and all(k in objs[0] for k in KEYS)
    assert set(objs[1]) == {"input", "error"}
    assert objs[1]["input"] == "C1CC" and "unclosed ring" in objs[1]["error"]
    assert objs[2]["smiles"] == "CCO"


@pytest.mark.parametrize("argv, fragments", [
    (["analyze", "C1CC"], ["unclosed ring"]),
    (["analyze", "C(C)(C)(C)(C)C"], ["valence"]),
    (["analyze", "CCO>>CC=O"], ["reaction SMILES"]),
    (["analyze", "   "], ["empty input"]),
    (["analyze"], ["give a SMILES string or --file FILE"]),
    (["analyze", "--file", "/nonexistent/mols.txt"], ["cannot read /nonexistent/mols.txt"]),
    (["analyze", "CCO", "--checkpoint", "/nonexistent/ckpt"], ["checkpoint folder not found"]),
])
def test_bad_input_exit_code_2(capsys, argv, fragments):
    rc, out, err = _run(capsys, *argv)
    assert rc == 2
    assert out == ""
    _assert_one_line_error(err, *fragments)


def test_bad_checkpoints_exit_code_2(capsys, tiny_checkpoint, tmp_path):
    pickled = shutil.copytree(tiny_checkpoint, tmp_path / "pickled")
    (pickled / "model.pt").write_bytes(b"x")
    rc, _, err = _run(capsys, "analyze", "CCO", "--checkpoint", str(pickled))
    assert rc == 2
    _assert_one_line_error(err, "pickled files (model.pt)")

    bad = shutil.copytree(tiny_checkpoint, tmp_path / "badcfg")
    cfg = json.loads((bad / "config.json").read_text())
    cfg["hiden"] = 3
    (bad / "config.json").write_text(json.dumps(cfg))
    rc, _, err = _run(capsys, "analyze", "CCO", "--checkpoint", str(bad))
    assert rc == 2
    _assert_one_line_error(err, "unknown config keys: hiden")


def test_console_script_bad_input():
    """The installed entry point: exit code 2, one line on stderr, no traceback, nothing on stdout."""
    script = Path(sys.executable).parent / "hsanet"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "hsanet.cli"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd + ["analyze", "CC(C"], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 2
    assert proc.stdout == ""
    _assert_one_line_error(proc.stderr, "RDKit could not read this SMILES", "extra open parentheses")


def _mini_chebi(tmp_path):
    """A data folder with tiny ChEBI-20 train/test splits and the shared SciBERT vocabulary."""
    from hsanet.metrics.captions import VOCAB_RELATIVE
    from hsanet.paths import data_dir

    vocab = data_dir() / VOCAB_RELATIVE
    if not vocab.is_file():
        pytest.skip(f"shared data absent: {vocab}")
    root = tmp_path / "data"
    (root / "chebi20").mkdir(parents=True)
    (root / VOCAB_RELATIVE.parent).symlink_to(vocab.parent)
    rows = {"train": [("1", "CCO", "The molecule is a primary alcohol."),
                      ("2", "c1ccccc1O", "The molecule is a member of phenols.")],
            "test": [("3", "CCCO", "The molecule is a primary alcohol that is propane substituted by hydroxy."),
                     ("4", "Cc1ccccc1O", "The molecule is a member of phenols that is phenol substituted by methyl.")]}
    for name, body in rows.items():
        (root / "chebi20" / f"{name}.txt").write_text(
            "CID\tSMILES\tdescription\n" + "".join("\t".join(r) + "\n" for r in body))
    return root


def test_baseline_versus_predictions(capsys, tmp_path):
    root = _mini_chebi(tmp_path)
    preds = tmp_path / "preds.tsv"
    from hsanet.metrics.captions import write_predictions

    write_predictions(preds, ["Cc1ccccc1O", "CCCO"],                 # any order: matched by SMILES
                      ["x", "y"], ["The molecule is a steroid.",
                                   "The molecule is a primary alcohol that is propane substituted by hydroxy."])
    assert main(["baseline", "retrieval", "--data-dir", str(root), "--versus", str(preds)]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["pool"] == "train" and got["n"] == 2
    v = got["versus"]["overall"]
    assert v["n"] == 2 and v["win"] == 0.5 and v["loss"] == 0.5
    wrong = tmp_path / "wrong.tsv"
    write_predictions(wrong, ["CCCO"], ["x"], ["y"])
    assert main(["baseline", "retrieval", "--data-dir", str(root), "--versus", str(wrong)]) == 2
    assert "lacks 1 of the 2 molecules" in capsys.readouterr().err


@pytest.mark.parametrize("flags", [["--beams", "0"], ["--retrieval-k", "-1"], ["--batch-size", "0"]])
def test_evaluate_rejects_nonsense_flags(capsys, flags):
    assert main(["evaluate", *flags]) == 2
    err = capsys.readouterr().err
    assert flags[0] in err and "Traceback" not in err


@pytest.mark.parametrize("body, fragment", [
    ("model: [unclosed\n", "not a valid YAML file"),
    ("model:\n  retrieval_kk: 1\n", "unknown model key 'retrieval_kk'; did you mean 'retrieval_k'?"),
    ("train:\n  bogus_option: 1\n", "unknown train key 'bogus_option'"),
    ("modle:\n  retrieval_k: 1\n", "model: and train: only"),
    ("- a\n- b\n", "model: and train: only"),
    ("train:\n  batch_size: 2.5\n", "--batch-size must be a whole number"),         # values: before any work
    ("train:\n  lr: fast\n", "--lr must be a number"),
    ("model:\n  hidden: -5\n", "hidden must be a positive integer"),
    ("train:\n  datasets: ',,'\n  task: property\n", "--datasets: name at least one"),
])
def test_train_config_errors_exit_2(capsys, tmp_path, body, fragment):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(body)
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_user_errors_exit_2_with_one_line(capsys, tmp_path, tiny_checkpoint):
    bad = tmp_path / "bad.tsv"
    bad.write_text("a\tb\n1\t2\n")
    cases = [
        (["evaluate", "--predictions", str(bad)], "missing column"),
        (["analyze", "CCO", "--max-new-tokens", "-5", "--checkpoint", str(tiny_checkpoint)], "--max-new-tokens"),
        (["analyze", "CCO", "--beams", "0", "--checkpoint", str(tiny_checkpoint)], "--beams"),
        (["train", "--task", "property", "--datasets", "NOPE", "--init", str(tiny_checkpoint),
          "--out", str(tmp_path / "p")], "unknown MoleculeNet dataset 'NOPE'"),
    ]
    for argv, fragment in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert fragment in err and "Traceback" not in err, (argv, err)


def test_evaluate_end_to_end_stdout_is_json(capsys, tmp_path, tiny_checkpoint):
    """hsanet evaluate on a tiny split: stdout holds the JSON result only (progress goes to stderr)."""
    root = _mini_chebi(tmp_path)
    out = tmp_path / "eval"
    assert main(["evaluate", "--checkpoint", str(tiny_checkpoint), "--split", "test", "--data-dir", str(root),
                 "--out", str(out)]) == 0
    got = capsys.readouterr()
    result = json.loads(got.out)
    assert result["n"] == 2 and result["split"] == "test" and "captioning" in got.err
    assert (out / "predictions.tsv").is_file() and json.loads((out / "metrics.json").read_text())["n"] == 2


@pytest.mark.parametrize("argv, fragment", [
    (["nonsense"], "invalid choice"),
    (["analyze", "CCO", "--beams", "x"], "invalid int value"),
    (["analyze", "CCO", "--device", "tpu"], "not a device"),
    (["analyze", "CCO", "--strategy", "bogus"], "not a Lightning strategy"),
    (["train", "--lr", "-1"], "--lr must be more than 0"),
    (["train", "--batch-size", "0"], "--batch-size must be at least 1"),
    (["train", "--epochs", "0"], "--epochs must be at least 1"),
    (["train", "--max-minutes", "-3"], "--max-minutes must be more than 0"),
    (["train", "--holdout", "1.5"], "--holdout must be in [0, 1)"),
    (["train", "--max-steps", "0"], "--max-steps"),
    (["train", "--threads", "-2"], "--threads must be at least 0"),
    (["train", "--precision", "bogus"], "--precision must be one of"),
    (["train", "--devices", "0"], "--devices must be auto"),
    (["train", "--strategy", "dpp"], "did you mean 'ddp'"),
    (["train", "--task", "property", "--split-seeds", "a,b"], "--split-seeds must be comma-separated integers"),
    (["train", "--resume", "/nonexistent.ckpt"], "no such file"),
    (["train", "--init", "/nonexistent"], "no such checkpoint folder"),
    (["evaluate", "--devices", "-1"], "--devices must be at least 0"),
    (["evaluate", "--predictions", "/nonexistent.tsv"], "no such file"),
    (["baseline", "retrieval", "--split", "bogus"], "invalid choice"),
    (["baseline", "retrieval", "--limit", "-3"], "--limit must be at least 0"),
    (["bench", "--runs", "0"], "--runs must be at least 1"),
    (["bench", "--checkpoint", "/nonexistent"], "no such checkpoint folder"),
    (["report", "--runs", "/nonexistent"], "no such folder"),
    (["reference", "build", "--limit", "1"], "--limit must be at least 3"),
])
def test_bad_command_lines_exit_2_with_one_line(capsys, argv, fragment):
    """Every user error: exit code 2, one line on stderr that names the problem, no work started."""
    try:
        rc = main(argv)
    except SystemExit as exc:          # argparse's own errors
        rc = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert fragment in err[0] and "Traceback" not in err[0]


def test_help_shows_defaults(capsys):
    """Every option with a default says so in --help (the train defaults come from TRAIN_DEFAULTS)."""
    for argv in (["evaluate", "--help"], ["train", "--help"], ["bench", "--help"]):
        with pytest.raises(SystemExit):
            main(argv)
    out = " ".join(capsys.readouterr().out.split())
    for shown in ("--beams BEAMS (default: 1)", "--batch-size BATCH_SIZE (default: 16)", "--lr LR (default: 0.001)",
                  "--split {test,validation,train} (default: test)", "--seed SEED (default: 0)"):
        assert shown in out, shown


def test_a_folder_given_as_a_file_is_one_line(capsys, tmp_path):
    assert main(["evaluate", "--predictions", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(tmp_path) in err[0]
