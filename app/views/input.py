"""1. Input: the Ketcher editor, a SMILES box, example molecules and batch mode (CSV upload)."""
from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from app import state
from app.views.common import Page, section
from hsanet.featurizers import MoleculeError, parse
from hsanet.inference import batch
from hsanet.data.tables import TableError, read_table, to_safe_csv

# Small to large, one salt; all are in the ChEBI-20 test split, so the caption view can score them.
EXAMPLES = [
    ("Ethanol", "CCO", "3 heavy atoms"),
    ("Benzoic acid", "O=C(O)c1ccccc1", "9"),
    ("Phenylhydrazine HCl", "Cl.NNc1ccccc1", "9, a salt"),
    ("Ibuprofen", "CC(C)Cc1ccc(C(C)C(=O)O)cc1", "15"),
    ("Cefadroxil", "CC1=C(C(=O)O)N2C(=O)[C@@H](NC(=O)[C@H](N)c3ccc(O)cc3)[C@H]2SC1", "25"),
    ("Quercetin 3-fucoside",
     "C[C@H]1O[C@@H](Oc2c(-c3ccc(O)c(O)c3)oc3cc(O)cc(O)c3c2=O)[C@H](O)[C@@H](O)[C@H]1O", "32"),
    ("Vincristine",
     "CC[C@@]1(O)C[C@@H]2CN(CCc3c([nH]c4ccccc34)[C@@](C(=O)OC)(c3cc4c(cc3OC)N(C=O)[C@H]3[C@@](O)"
     "(C(=O)OC)[C@H](OC(C)=O)[C@]5(CC)C=CCN6CC[C@]43[C@@H]65)C2)C1", "60"),
]
INPUT_KEY = "smiles_input"
BATCH_MAX_ROWS = 1000
BATCH_MAX_BYTES = 5_000_000
KETCHER_HEIGHT = 600


def set_input(text: str) -> None:
    st.session_state[INPUT_KEY] = text


def _canonical(text: str) -> str | None:
    try:
        return parse(text).smiles
    except MoleculeError:
        return None


def canvas_molecule(text: str, rejected_drawing: str | None) -> str:
    """What the editor shows: the molecule being analysed (the input's canonical SMILES); a drawing
    RDKit rejected stays on the canvas to be fixed; any other bad input leaves the canvas empty."""
    canonical = _canonical(text)
    if canonical is not None:
        return canonical
    if text and text == rejected_drawing:
        return text
    return ""


KETCHER_KEY = "ketcher"
KETCHER_FRAME = 'iframe[title="streamlit_ketcher.streamlit_ketcher"]'
# Puts a molecule on the mounted editor, once per molecule, with Ketcher's own API (setMolecule): the
# canvas changes in place instead of being re-mounted. streamlit-ketcher keeps its Ketcher instance in
# React state (it sets no window.ketcher), so the script finds it among the hooks of the component's
# same-origin frame and keeps it there as window.__hsanetKetcher.
_CANVAS_JS = """<script>
(() => {
  const want = %s, draw = %s, stop = Date.now() + 180000;
  const find = (w) => {
    if (w.__hsanetKetcher) return w.__hsanetKetcher;
    const root = w.document && w.document.getElementById('root');
    if (!root) return null;
    const key = Object.keys(root).find(k => k.startsWith('__reactContainer'));
    const legacy = root._reactRootContainer;
    const stack = [key ? root[key] : legacy && (legacy._internalRoot || legacy).current];
    for (let n = 0; stack.length && n < 50000; n++) {
      const f = stack.pop();
      if (!f) continue;
      for (let h = f.memoizedState, m = 0; h && typeof h === 'object' && m < 64; h = h.next, m++) {
        const v = h.memoizedState;
        if (v && typeof v.setMolecule === 'function' && typeof v.getSmiles === 'function') {
          w.__hsanetKetcher = v;
          return v;
        }
      }
      if (f.sibling) stack.push(f.sibling);
      if (f.child) stack.push(f.child);
    }
    return null;
  };
  const tick = () => {
    const f = document.querySelector('%s');
    const w = f && f.contentWindow;
    const k = w && find(w);
    if (!k) { if (Date.now() < stop) setTimeout(tick, 150); return; }
    if (w.__hsanetCanvas === want) return;
    w.__hsanetCanvas = want;
    if (draw) k.setMolecule(want);
  };
  tick();
})();
</script>"""


def _canvas_script(molecule: str, draw: bool) -> str:
    """The page script that shows ``molecule`` on the editor (``draw=False``: the canvas already
    shows it, as after Apply, and the user's layout is kept)."""
    quoted = json.dumps(molecule).replace("</", "<\\/")
    return _CANVAS_JS % (quoted, "true" if draw else "false", KETCHER_FRAME)


def _ketcher_value(current: str) -> str | None:
    """The editor, showing the current molecule; returns a drawing when the user has newly pressed Apply.

    streamlit-ketcher 0.0.1 reads its ``molecule`` argument only when it mounts, so the editor keeps
    one key (it is never re-mounted: no blank canvas, no reload of its bundle) and each new molecule
    is put on it by a small page script through Ketcher's API (``_CANVAS_JS``). The component keeps returning the
    last applied drawing; only a new one counts."""
    try:
        from streamlit_ketcher import _render_component
    except ImportError:
        st.caption("The Ketcher editor (streamlit-ketcher) is not installed; type a SMILES instead.")
        return None
    value = _render_component(molecule=current, height=KETCHER_HEIGHT, molecule_format="SMILES", key=KETCHER_KEY,
                              default=None)
    st.html(_canvas_script(current, draw=current != st.session_state.get("_ketcher_drawn")),
            unsafe_allow_javascript=True)
    if value is None or value == st.session_state.get("_ketcher_seen"):
        return None
    st.session_state["_ketcher_seen"] = value
    return value


def _ketcher(current: str) -> None:
    """A newly applied drawing becomes the input. Ketcher returns Kekulé SMILES: it is canonicalized
    before anything else (parse), so the same molecule drawn or typed gives the same analysis."""
    drawn = _ketcher_value(current)
    if not drawn or not drawn.strip():
        return
    canonical = _canonical(drawn)
    if canonical is None:                       # let the SMILES box show RDKit's complaint
        st.session_state["_ketcher_bad"] = drawn
        st.session_state["_ketcher_drawn"] = drawn
        st.session_state[INPUT_KEY] = drawn
    elif canonical != current:
        st.session_state["_ketcher_drawn"] = canonical      # on the canvas already, as drawn
        st.session_state[INPUT_KEY] = canonical


def render(page: Page, model):
    """Render the input view; return (input text, a container for in-place messages)."""
    section("input")
    st.session_state.setdefault(INPUT_KEY, EXAMPLES[3][1])
    top = st.container()          # shown above the editor, filled after it: an applied drawing sets the
    # input's state, which Streamlit allows only before the SMILES box is created
    # the editor on its own full-width row: Ketcher needs the width for its toolbars and atom palette
    st.markdown("**Draw** a molecule, then press **Apply** (under the canvas). The canvas shows the molecule "
                "being analysed.")
    _ketcher(canvas_molecule(st.session_state.get(INPUT_KEY, ""), st.session_state.get("_ketcher_bad")))
    with top:
        text_col, example_col = st.columns([1, 1], gap="large")
        with text_col:
            st.text_input("**SMILES**", key=INPUT_KEY,
                          placeholder="e.g. CC(=O)Oc1ccccc1C(=O)O",
                          help="Any SMILES RDKit reads; it is canonicalized before the analysis.")
            messages = st.container()
        with example_col:
            st.markdown("**Examples** (small to large, one salt)")
            cols = st.columns(2)
            for i, (name, smiles, size) in enumerate(EXAMPLES):
                cols[i % 2].button(f"{name} ({size})", key=f"example-{i}", on_click=set_input, args=(smiles,),
                                   width="stretch", help=smiles)
    _batch(page, model)
    return st.session_state.get(INPUT_KEY, ""), messages


# ------------------------------------------------------------------------------------------- batch
def _pick_row(rows: list[dict]) -> None:
    sel = st.session_state.get("batch_table")
    try:
        picked = sel["selection"]["rows"]
    except (KeyError, TypeError):
        return
    if picked and 0 <= picked[0] < len(rows) and rows[picked[0]].get("smiles"):
        set_input(rows[picked[0]]["smiles"])


def run_batch(page: Page, model, smiles: list[str], captions: bool, extra: list[dict] | None = None) -> dict:
    """Analyze every row with :func:`hsanet.inference.batch.run_batch`, with a progress bar."""
    n = len(smiles)
    bar = st.progress(0.0, text=f"Analyzing {n} molecules…")
    result = batch.run_batch(model, smiles, caption=captions, num_beams=page.num_beams,
                             max_new_tokens=page.max_new_tokens, budget_s=state.batch_budget_s(),
                             extra=extra, progress=lambda done, total: bar.progress(done / total,
                                                                       text=f"Analyzed {done} of {total} molecules"))
    bar.progress(1.0, text=f"Done: {n} rows in {result['seconds']:.1f} s")
    stop = result["stopped"]
    if stop:
        result["stopped"] = (f"Stopped after {stop['done']} of {stop['total']} rows: the batch time budget of "
                             f"{stop['budget_s']:.0f} s was exceeded (set {state.BATCH_BUDGET_ENV} to change it). "
                             "The remaining rows are marked.")
    return result


def _batch(page: Page, model) -> None:
    result = st.session_state.get("batch")
    with st.expander(f"**Batch mode**: upload a CSV with a SMILES column (up to {BATCH_MAX_ROWS:,} rows)",
                     expanded=result is not None):
        upload = st.file_uploader("CSV or TSV file", type=["csv", "tsv", "txt", "smi"], key="batch_file")
        table = None
        if upload is not None:
            try:
                table = read_table(upload.getvalue(), max_bytes=BATCH_MAX_BYTES, max_rows=BATCH_MAX_ROWS)
            except TableError as exc:
                st.error(f"This file cannot be used: {exc}")
        if table is not None:
            st.caption(f"`{upload.name}`: {len(table):,} rows; SMILES column `{table.smiles_column}`.")
            captions = st.checkbox("Generate captions (the slow part on a CPU)", value=True, key="batch_captions")
            if st.button(f"Analyze {len(table):,} molecules", key="batch_run", type="primary"):
                others = [{k: v for k, v in r.items() if k != table.smiles_column} for r in table.rows]
                result = run_batch(page, model, table.smiles, captions, others)
                result["name"] = upload.name
                st.session_state["batch"] = result
                st.session_state.pop("batch_table", None)
        if result is None:
            return
        rows = result["rows"]
        if result.get("stopped"):
            st.warning(result["stopped"])
        failed = sum(1 for r in rows if r["error"])
        st.markdown(f"**Results** for `{result.get('name', 'upload')}`: {len(rows) - failed} analyzed, "
                    f"{failed} with errors, {result['seconds']:.1f} s. Tick a row to inspect it.")
        st.dataframe(pd.DataFrame(rows), key="batch_table", on_select=lambda: _pick_row(rows),
                     selection_mode="single-row", hide_index=True, height=min(400, 38 + 35 * len(rows)))
        ok = [i for i, r in enumerate(rows) if r["smiles"]]
        pick_col, go_col, dl_col = st.columns([3, 1, 1], vertical_alignment="bottom")
        if ok:
            choice = pick_col.selectbox("Row to inspect", ok, key="batch_pick",
                                        format_func=lambda i: f"row {rows[i]['row']}: {rows[i]['smiles'][:60]}")
            go_col.button("Inspect", key="batch_inspect", on_click=set_input, args=(rows[choice]["smiles"],))
        dl_col.download_button("Download CSV", to_safe_csv(rows), file_name="hsanet-batch.csv", mime="text/csv",
                               key="batch_download", on_click="ignore")
