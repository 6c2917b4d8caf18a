"""Streamlit AppTest of the app: every view with a SMILES input, bad input, CSV upload (batch mode),
teaching mode, the missing-default fallback, the time budget, ablation checkpoints and the reference
set views (with a small stand-in that follows the ReferenceSet API).

The app runs on a small untrained checkpoint made here (``$HSANET_CHECKPOINT``), never on the trained
default, and with ``assets/reference`` and ``assets/ablations`` pointed at temporary folders.
"""
from __future__ import annotations

import base64
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from streamlit.testing.v1 import AppTest

from hsanet import HSANet, HSANetConfig, paths

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app" / "main.py")
if str(ROOT) not in sys.path:          # the app package lives at the repository root
    sys.path.insert(0, str(ROOT))
TIMEOUT = 240          # seconds per script run: the CPU is slow and shared
PROPERTY_TASKS = {"p_np": "classification", "logS": "regression"}
SCIBERT = paths.data_dir() / "scibert_scivocab_uncased" / "vocab.txt"
IBUPROFEN = "CC(C)Cc1ccc(C(C)C(=O)O)cc1"
CHEBI_ROWS = {   # a few ChEBI-20-format rows (CID, SMILES as the files write them, description)
    "test": [("3672", "CC(C)CC1=CC=C(C=C1)C(C)C(=O)O",
              "The molecule is a monocarboxylic acid that is propionic acid in which one of the hydrogens at "
              "position 2 is substituted by a 4-(2-methylpropyl)phenyl group."),
             ("702", "CCO", "The molecule is a primary alcohol that is ethane in which one of the hydrogens is "
                            "substituted by a hydroxy group.")],
    "validation": [("241", "C1=CC=CC=C1", "The molecule is a six-carbon aromatic annulene.")],
}


def _config(**overrides) -> HSANetConfig:
    kw = dict(num_layers=2, hidden=32, proj_dim=16, num_queries=2, num_heads=4, d_state=8, num_motif_queries=2,
              lm_dim=32, lm_layers=1, lm_heads=2, max_positions=256, max_caption_tokens=8, retrieval_k=0,
              property_tasks=dict(PROPERTY_TASKS))
    kw.update(overrides)
    return HSANetConfig(**kw)


@pytest.fixture(scope="session")
def app_checkpoints(tokenizer, tmp_path_factory):
    """A small untrained full model and a no-SAF ablation checkpoint."""
    root = tmp_path_factory.mktemp("app")
    torch.manual_seed(0)
    HSANet(_config(), tokenizer).save_pretrained(root / "model")
    HSANet(_config(variant="nosaf"), tokenizer).save_pretrained(root / "ablations" / "nosaf")
    return root


@pytest.fixture(scope="session")
def data_folder(tmp_path_factory):
    """A small stand-in for ../shared/data: ChEBI-20 rows and (when present) the SciBERT vocabulary."""
    root = tmp_path_factory.mktemp("data")
    (root / "chebi20").mkdir()
    for split, rows in CHEBI_ROWS.items():
        lines = ["CID\tSMILES\tdescription"] + ["\t".join(r) for r in rows]
        (root / "chebi20" / f"{split}.txt").write_text("\n".join(lines) + "\n")
    if SCIBERT.is_file():
        (root / SCIBERT.parent.name).mkdir()
        shutil.copy(SCIBERT, root / SCIBERT.parent.name / "vocab.txt")
    return root


@pytest.fixture
def env(app_checkpoints, data_folder, monkeypatch, tmp_path):
    monkeypatch.setenv("HSANET_CHECKPOINT", str(app_checkpoints / "model"))
    monkeypatch.setenv("HSANET_DATA", str(data_folder))
    monkeypatch.delenv("HSANET_TIME_BUDGET_S", raising=False)
    monkeypatch.setattr(paths, "REFERENCE_DIR", tmp_path / "no-reference")
    monkeypatch.setattr(paths, "ABLATION_DIR", tmp_path / "no-ablations")
    return app_checkpoints


def _run(at: AppTest) -> AppTest:
    """One script run, then reruns while a background lookup (ChEBI-20 index, METEOR's WordNet) is
    still working, as a user pressing "Check again" would."""
    deadline = time.time() + TIMEOUT
    while True:
        at.run(timeout=TIMEOUT)
        assert not at.exception, [e.value for e in at.exception]
        if not any(b.key == "chebi_retry" for b in at.button) or time.time() > deadline:
            return at
        time.sleep(2)


def _app(smiles: str | None = None) -> AppTest:
    at = _run(AppTest.from_file(APP, default_timeout=TIMEOUT))
    if smiles is not None:
        at.text_input(key="smiles_input").set_value(smiles)
        _run(at)
    return at


def _texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption] + [i.value for i in at.info]
    parts += [w.value for w in at.warning] + [e.value for e in at.error]
    return "\n".join(str(p) for p in parts)


def _figures(at: AppTest) -> dict[str, dict]:
    """Plotly figures on the page, by their chart key suffix."""
    out = {}
    for el in at.get("plotly_chart"):
        spec = json.loads(el.proto.spec)
        out[el.proto.id] = spec
    return out


def _arr(value) -> np.ndarray:
    """A plotly JSON array: a list, or plotly's typed-array form {dtype, bdata, shape}."""
    if isinstance(value, dict) and "bdata" in value:
        out = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        shape = value.get("shape")
        if shape:
            out = out.reshape([int(n) for n in str(shape).split(",")])
        return out
    return np.asarray(value)


def _figure(at: AppTest, title_part: str) -> dict:
    for spec in _figures(at).values():
        title = json.dumps(spec.get("layout", {}).get("title", ""))
        annotations = json.dumps(spec.get("layout", {}).get("annotations", []))
        if title_part in title or title_part in annotations:
            return spec
    raise AssertionError(f"no figure with {title_part!r}")


# ------------------------------------------------------------------------------------------ views
def test_every_view_renders_for_a_smiles(env):
    at = _app(IBUPROFEN)          # ibuprofen: in the ChEBI-20 test split
    assert not at.error
    headers = [h.value for h in at.header]
    assert headers == ["1. Input", "2. Molecule", "3. Caption and properties", "4. Over-smoothing",
                       "5. HAP routing", "6. Source-Aware Fusion", "7. Embedding map", "8. Ablation compare",
                       "9. Runtime", "10. Export"]
    text = _texts(at)
    # the untrained checkpoint is labelled as such
    assert any("untrained" in w.value for w in at.warning)
    # 2. molecule: a drawing, counts from the trace
    assert at.get("image"), "no molecule drawing"
    assert "**15** heavy atoms" in text
    # 3. caption and properties
    assert "Generated caption" in text and "(greedy, untrained model)" in text
    props = [df.value for df in at.dataframe if "task" in df.value.columns]
    assert props and set(props[0]["task"]) == set(PROPERTY_TASKS)
    assert "ChEBI-20 reference description" in text and "CID 3672" in text
    # 4. over-smoothing: four panels, this molecule's line over 3 levels
    over = _figure(at, "Dirichlet energy")
    titles = [a["text"] for a in over["layout"]["annotations"]]
    assert titles == ["MAD", "Dirichlet energy", "Effective rank", "Mean cosine similarity"]
    mol_lines = [t for t in over["data"] if t.get("name") == "this molecule"]
    assert len(mol_lines) == 4 and all(len(_arr(t["y"])) == 3 for t in mol_lines)
    assert "No reference band" in text
    # 5. routing: gate bars per level and the routing table
    gate = _figure(at, "Gate per level")
    assert [t["name"] for t in gate["data"]] == ["p(E_Attn)", "p(E_Mamba)"]
    routing = [df.value for df in at.dataframe if "p(E_Attn)" in df.value.columns][0]
    assert len(routing) == 3 and np.allclose(routing["p(E_Attn)"] + routing["p(E_Mamba)"], 1, atol=1e-3)
    # 6. SAF heatmap: tokens x experts, two nonzero weights per token
    heat = _figure(at, "SAF routing")["data"][0]
    z = _arr(heat["z"]).astype(float)
    assert z.shape == (3 * 2 + 2, 4) and ((z > 0).sum(axis=1) == 2).all()
    assert any("motif" in y for y in heat["y"]) and any("level 0" in y for y in heat["y"])
    # 7. embedding map without a reference set
    assert "No reference set, so no map" in text
    # 9. runtime
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Device"] == "CPU" and "scan" in metrics["Graph-Mamba backend"].lower()
    _figure(at, "Time per stage")
    # 10. export: JSON report button
    labels = [b.proto.label for b in at.get("download_button")]
    assert "Download report (JSON)" in labels


@pytest.mark.skipif(not SCIBERT.is_file(), reason=f"shared data absent: {SCIBERT} (set HSANET_DATA)")
def test_chebi_reference_and_caption_scores(env, monkeypatch):
    from app import state

    analyze = state.get_trace

    def with_caption(*args, **kwargs):    # the tiny untrained decoder may write nothing
        trace = analyze(*args, **kwargs)
        trace.caption = "The molecule is a monocarboxylic acid that is propionic acid."
        return trace

    monkeypatch.setattr(state, "get_trace", with_caption)
    at = _app(IBUPROFEN)
    metrics = {m.label: float(m.value) for m in at.metric if m.label in ("BLEU-4 (sentence, smoothed)", "METEOR")}
    assert len(metrics) == 2                   # a short caption: BLEU's brevity penalty can make it ~0
    assert 0 <= metrics["BLEU-4 (sentence, smoothed)"] <= 100 and 0 < metrics["METEOR"] <= 100
    at.text_input(key="smiles_input").set_value("CC(C)(C)C(C)(C)C(C)(C)C")
    _run(at)
    assert "not in ChEBI-20" in _texts(at)


def test_molecule_overlays_and_level_change(env):
    at = _app("CCO")
    at.radio(key="mol_colour").set_value("Feature change between two levels")
    _run(at)
    change = _figure(at, "Per-atom change of node features")
    bars = change["data"][0]
    assert len(_arr(bars["y"])) == 3
    assert any("change 0→2" in df.value.columns for df in at.dataframe)
    # one numbering (the drawing's scan positions) and one colour scale (smallest .. largest) for both
    assert sorted(int(x[1:]) for x in bars["x"]) == [1, 2, 3] and [int(x[1:]) for x in bars["x"]] == [1, 2, 3]
    ys = [float(v) for v in _arr(bars["y"])]
    assert bars["marker"]["cmin"] == pytest.approx(min(ys)) and bars["marker"]["cmax"] == pytest.approx(max(ys))
    from app import draw

    colours = draw.value_colours([0.0, 1.0, 2.0])
    assert colours[0] != colours[1] != colours[2]
    at.checkbox(key="mol_scan").uncheck()
    _run(at)
    assert at.get("image")


def test_beam_search_option(env):
    at = _app("CCO")
    at.radio(key="decoding").set_value("beam search")
    _run(at)
    assert "beam search (4 beams)" in _texts(at)


@pytest.mark.parametrize("bad, message", [
    ("C1CC", "unclosed ring"),
    ("CC>>CC", "reaction"),
    ("not a molecule", "RDKit could not read"),
])
def test_bad_input_shows_the_error_in_place_and_keeps_running(env, bad, message):
    at = _app(bad)
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and message in errors[0]
    assert "Enter a molecule in **1. Input**" in _texts(at)
    at.text_input(key="smiles_input").set_value("CCO")
    _run(at)
    assert not at.error and at.get("image")


def test_salt_example_button(env):
    at = _app()
    at.button(key="example-2").click()
    _run(at)
    assert at.text_input(key="smiles_input").value == "Cl.NNc1ccccc1"
    text = _texts(at)
    assert "**2** disconnected parts" in text and "salt or mixture" in text


def test_csv_upload_batch_mode(env):
    at = _app("CCO")
    csv = b"name,SMILES\nethanol,CCO\nbroken,C1CC\nbenzene,c1ccccc1\nformula,=1+2\n"
    at.file_uploader(key="batch_file").set_value(("mols.csv", csv, "text/csv"))
    _run(at)
    assert "4 rows" in _texts(at)
    at.button(key="batch_run").click()
    _run(at)
    table = [df.value for df in at.dataframe if "hap_pattern" in df.value.columns][0]
    assert list(table["row"]) == [1, 2, 3, 4]
    assert list(table.columns[:3]) == ["row", "error", "name"]          # the error first, the user's columns kept
    assert list(table["name"]) == ["ethanol", "broken", "benzene", "formula"]
    assert table["error"].astype(bool).tolist() == [False, True, False, True]
    assert {"brics_fragments", "disconnected_parts"} <= set(table.columns) and "fragments" not in table.columns
    assert set(PROPERTY_TASKS) <= {c.removeprefix("pred: ") for c in table.columns}
    assert table.loc[2, "smiles"] == "c1ccccc1" and len(table.loc[2, "hap_pattern"]) == 3
    assert "Download CSV" in [b.proto.label for b in at.get("download_button")]
    # pick a row to inspect
    at.selectbox(key="batch_pick").set_value(2)
    _run(at)
    at.button(key="batch_inspect").click()
    _run(at)
    assert at.text_input(key="smiles_input").value == "c1ccccc1"
    assert "**6** heavy atoms" in _texts(at)


def test_csv_upload_bad_file(env):
    at = _app("CCO")
    at.file_uploader(key="batch_file").set_value(("x.csv", b"name,weight\na,1\n", "text/csv"))
    _run(at)
    assert any("no SMILES column" in e.value for e in at.error)
    assert at.get("image")                              # the rest of the page still works


def test_teaching_mode_explains_every_view(env):
    at = _app("CCO")
    n_before = len(at.info)
    at.toggle(key="teaching").set_value(True)
    _run(at)
    texts = [i.value for i in at.info]
    assert len(texts) >= n_before + 10
    assert any("Fig. 5" in t for t in texts) and any("43.5" in t for t in texts)


def test_ablation_compare(env, monkeypatch):
    monkeypatch.setattr(paths, "ABLATION_DIR", env / "ablations")      # only nosaf has a checkpoint
    at = _app("CCO")
    at.button(key="compare_run").click()
    _run(at)
    text = _texts(at)
    for title in ("The app's model", "Attention only", "Mamba only", "No SAF", "Full HSA-Net"):
        assert f"#### {title}" in text
    assert "the app's model, `" in text and "(not the app's model)" in text       # every column names its source
    assert text.count("routing forced on the full model's weights — no ablation checkpoint") == 2
    assert "ablations/nosaf" in text and "**untrained**" in text
    assert "**Routing** `AAA`" in text and "**Routing** `MMM`" in text
    _figure(at, "Effective rank")


def test_missing_default_runs_untrained(env, monkeypatch, tmp_path):
    monkeypatch.delenv("HSANET_CHECKPOINT")
    monkeypatch.setattr(paths, "DEFAULT_CHECKPOINT", tmp_path / "missing-default")
    at = _app("CCO")
    assert any("No trained default model yet" in w.value for w in at.warning)
    text = _texts(at)
    assert "untrained HSA-Net (no checkpoint)" in text
    assert "no caption decoder" in text
    assert at.get("image")


def test_caption_failure_leaves_the_structural_views(env, monkeypatch):
    """The page is analyzed twice, first without the caption: when the caption pass fails, the error
    shows in the caption section and every other view still renders from the first pass."""
    real = HSANet.analyze

    def analyze(self, inputs, caption=True, **kwargs):
        if caption:
            raise RuntimeError("decoder exploded")
        return real(self, inputs, caption=False, **kwargs)

    monkeypatch.setattr(HSANet, "analyze", analyze)
    at = _app("CC(=O)Oc1ccccc1C(=O)O.CCCCN")
    assert not at.exception
    text = _texts(at)
    assert any("could not write a caption" in e.value and "decoder exploded" in e.value for e in at.error)
    assert "No caption for this molecule in this run" in text
    assert "heavy atoms" in text and "Generated caption" in text
    props = [df.value for df in at.dataframe if "task" in df.value.columns]
    assert props and set(props[0]["task"]) == set(PROPERTY_TASKS)
    _figure(at, "Gate per level")
    _figure(at, "Time per stage")


def test_time_budget_exceeded_message(env, monkeypatch):
    monkeypatch.setenv("HSANET_TIME_BUDGET_S", "0.001")
    at = _app("CCCCCCCCCCCCCCCCCCCCO")
    warnings = [w.value for w in at.warning]
    assert any("time budget" in w for w in warnings)
    assert not at.exception


# ------------------------------------------------------------------------------------------ reference
def _reference_set(n: int = 40):
    """A real hsanet.reference.store.ReferenceSet over synthetic data, shaped for the test checkpoint
    (3 levels, hidden 32, proj_dim 16); ``hsanet reference build`` would need UMAP, too slow here."""
    from hsanet.reference.store import ReferenceSet, cluster_column, stage_names

    rng = np.random.default_rng(0)
    stages = stage_names(3)
    smiles = ["CCO"] + ["C" * (i % 9 + 1) + "N" for i in range(n - 1)]
    table = pd.DataFrame({
        "smiles": smiles, "cid": [str(1000 + i) for i in range(n)], "caption": [f"caption {i}" for i in range(n)],
        "description": [f"description {i}" for i in range(n)], "heavy_atoms": [len(s) for s in smiles],
        "hap_pattern": ["AAM" if i % 2 else "AMM" for i in range(n)], "p_np": rng.random(n)})
    for s in stages:
        table[cluster_column(s)] = rng.integers(0, 4, n)

    def unit_rows(d):
        x = rng.normal(size=(n, d)).astype(np.float32)
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float16)

    metrics = ("mad", "dirichlet_energy", "effective_rank", "mean_cosine")
    ref = ReferenceSet(
        folder=Path("stand-in"), meta={"trained": False, "checkpoint": "stand-in", "n": n}, stages=stages,
        table=table,
        level_stats=pd.DataFrame([[l, m, 0.5, 0.4, 0.6, n] for l in range(3) for m in metrics],
                                 columns=["level", "metric", "median", "q25", "q75", "n"]),
        mamba_share=np.array([0.1, 0.4, 0.7]), mean_p_mamba=np.array([0.2, 0.45, 0.6]),
        expert_usage={"num_experts": 4, "top_k": 2, "assignments": 160, "overall": [0.25, 0.3, 0.2, 0.25],
                      "mean_weight": [0.5] * 4, "by_source": {"level 1": [0.4, 0.2, 0.2, 0.2],
                                                              "motif": [0.1, 0.5, 0.2, 0.2],
                                                              "level 0": [0.25] * 4}},
        property_columns=["p_np"], property_kinds={"p_np": "classification"},
        _coords={s: rng.normal(size=(n, 2)).astype(np.float32) for s in stages},
        _emb={s: unit_rows(32 if s.startswith("level") else 16) for s in stages})
    ref._row_of = {s: i for i, s in enumerate(table["smiles"])}
    return ref


def test_reference_views(env, monkeypatch):
    from app import state

    ref = _reference_set()
    monkeypatch.setattr(state, "reference_set", lambda: (ref, None))
    at = _app("CCO")
    assert not at.warning or all("cannot be placed" not in w.value for w in at.warning)
    over = _figure(at, "Dirichlet energy")
    assert {t.get("name") for t in over["data"]} >= {"reference median", "reference 25–75 %", "this molecule"}
    share = _figure(at, "Mamba share per level")
    assert np.allclose(_arr(share["data"][0]["y"]), [0.1, 0.4, 0.7])
    usage = _figure(at, "expert usage")["data"][0]
    assert usage["y"] == ["all tokens", "level 0", "level 1", "motif"]
    umap = _figure(at, "UMAP of 40 reference molecules")
    star = [t for t in umap["data"] if t.get("name") == "this molecule"][0]
    coords = ref.coords("after SAF")                      # CCO is row 0: placed on its own point
    assert np.allclose([_arr(star["x"])[0], _arr(star["y"])[0]], coords[0], atol=1e-5)
    assert at.selectbox(key="map_stage").value == "after SAF"
    assert at.selectbox(key="map_colour").options[0] == "predicted p_np"
    at.selectbox(key="map_colour").set_value("HAP pattern")
    at.selectbox(key="map_stage").set_value("level 0")
    _run(at)
    umap = _figure(at, "UMAP")
    assert "level 0 pooled" in json.dumps(umap["layout"]["title"])
    assert {t["name"] for t in umap["data"]} >= {"HAP pattern = AAM", "HAP pattern = AMM", "this molecule"}
    near = [df.value for df in at.dataframe if "similarity" in df.value.columns]
    assert near and len(near[0]) == 5 and near[0]["similarity"].is_monotonic_decreasing
    assert near[0]["smiles"].iloc[0] == "CCO" and "tanimoto" in near[0].columns
    # the five nearest are ringed on the map; a search rings what it finds
    assert len(_arr([t for t in umap["data"] if t.get("name") == "nearest to this molecule"][0]["x"])) == 5
    at.text_input(key="map_find").set_value("1003")
    _run(at)
    found = [t for t in _figure(at, "UMAP")["data"] if str(t.get("name", "")).startswith("found")]
    assert found and list(found[0]["customdata"]) == [3] and "Found 1 reference molecule" in _texts(at)
    # the linear map beside UMAP: PCA, with the molecule projected onto it
    at.radio(key="map_projection").set_value("PCA")
    _run(at)
    pca = _figure(at, "PCA of 40 reference molecules")
    assert "of variance" in json.dumps(pca["layout"]["xaxis"]["title"])
    star = [t for t in pca["data"] if t.get("name") == "this molecule"][0]
    assert np.allclose([_arr(star["x"])[0], _arr(star["y"])[0]], ref.projected("level 0", "pca")[0], atol=1e-5)
    at.radio(key="map_projection").set_value("UMAP")
    at.text_input(key="map_find").set_value("")
    _run(at)
    # a molecule outside the set is placed by its nearest neighbours
    at.text_input(key="smiles_input").set_value("c1ccccc1O")
    _run(at)
    assert not any("cannot be placed" in w.value for w in at.warning)


def test_example_sizes_and_teaching_text_match_the_molecules():
    """The examples' labels and the teaching text give the heavy-atom counts the molecules have."""
    from app.teaching import TEXTS
    from app.views.input import EXAMPLES
    from hsanet.featurizers import parse

    sizes = {name: parse(smiles).num_atoms for name, smiles, _ in EXAMPLES}
    for name, _, label in EXAMPLES:
        assert int(label.split()[0].rstrip(",")) == sizes[name], name
    assert f"ethanol ({sizes['Ethanol']} heavy atoms)" in TEXTS["input"]
    assert f"vincristine ({sizes['Vincristine']})" in TEXTS["input"]
    assert f"{sizes['Quercetin 3-fucoside']}-atom" in TEXTS["input"]


def test_the_canvas_shows_the_molecule_being_analysed():
    from app.views.input import canvas_molecule

    assert canvas_molecule("OCC", None) == "CCO"                     # canonical, as analysed
    assert canvas_molecule("C1CC", None) == ""                       # a bad typed input: nothing analysed
    assert canvas_molecule("C1CC", "C1CC") == "C1CC"                 # a rejected drawing stays to be fixed
    assert canvas_molecule("", None) == ""


def test_canvas_script_quotes_the_molecule_and_keeps_a_drawing():
    """The page script that puts a molecule on the editor: the SMILES is a JSON string (no way out
    of the script element), and after Apply the user's drawing is kept (draw = false)."""
    import json
    import re

    from app.views.input import _canvas_script

    script = _canvas_script('C</script><b>"x"', draw=True)
    assert "</script><b>" not in script.split("<script>", 1)[1].rsplit("</script>", 1)[0]
    quoted = re.search(r"const want = (.*?), draw = (true|false)", script)
    assert json.loads(quoted.group(1).replace("<\\/", "</")) == 'C</script><b>"x"' and quoted.group(2) == "true"
    assert "draw = false" in _canvas_script("CCO", draw=False)
