"""HSA-Net Explorer: draw or paste a molecule and watch HSA-Net work on it (``./run app``).

The page is thin: configuration, the sidebar (model, teaching mode, decoding, jump-to links), then
one function per view in app/views/, top to bottom. Everything shown comes from the
:class:`hsanet.inference.trace.Trace` that ``HSANet.analyze`` returns (see app/state.py for the caching).

A molecule is analyzed in two passes: first without the caption (tens of milliseconds), so every
structural view shows at once, then with it (about a second of greedy decoding on a CPU); the caption
section fills in when the second pass is done, and the views after the map use its trace.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:      # `streamlit run app/main.py` puts only app/ on the path
    sys.path.insert(0, str(ROOT))

# process settings of an entry point (hsanet/inference/runtime.py), before torch_geometric loads
from hsanet.inference.runtime import defer_unused_imports, tune_allocator  # noqa: E402

defer_unused_imports()
tune_allocator()

import streamlit as st  # noqa: E402

st.set_page_config(page_title="HSA-Net Explorer", page_icon=":material/hub:", layout="wide",
                   initial_sidebar_state="expanded")
st.set_option("client.toolbarMode", "viewer")      # no developer menu (Deploy, clear cache) for users

from app import state  # noqa: E402
from app.views import (ablation, caption, embedding, export, input as input_view, molecule,  # noqa: E402
                       oversmoothing, routing, runtime, saf)
from app.views.common import SECTIONS, Page  # noqa: E402
from hsanet.featurizers import MoleculeError, parse  # noqa: E402


def sidebar(info: state.ModelInfo) -> Page:
    with st.sidebar:
        st.markdown("## HSA-Net Explorer")
        badge = ":green-badge[trained]" if info.trained else ":orange-badge[untrained]"
        st.markdown(f"**Model** {badge}  \n`{info.label}`")
        with st.expander("Model details"):
            st.markdown(
                f"- variant: `{info.variant}`\n- device: `{info.device}`\n- GNN levels: {info.num_levels}\n"
                f"- SAF experts: {info.num_experts or 'none'}\n- caption decoder: {'yes' if info.has_decoder else 'no'}\n"
                f"- property tasks: {', '.join(info.property_tasks) or 'none'}")
            extra = {k: v for k, v in info.meta.items() if k != "trained" and isinstance(v, (str, int, float, bool))}
            if extra:
                st.json(extra, expanded=False)
        st.toggle("Teaching mode", key="teaching",
                  help="A short explanation above each view: what is plotted, what the paper claims, what to look for.")
        st.markdown("**Caption decoding**")
        decoding = st.radio("Caption decoding", ["greedy", "beam search"], key="decoding", horizontal=True,
                            label_visibility="collapsed")
        beams = st.slider("Beams", 2, 8, 4, key="beams") if decoding == "beam search" else 1
        max_tokens = st.number_input("Max caption tokens", min_value=4, max_value=512,
                                     value=int(info.max_caption_tokens), step=8, key="max_tokens")
        fmt = st.radio("Plot download format (toolbar camera icon)", ["png", "svg"], key="image_format",
                       horizontal=True)
        st.markdown("**Jump to**")
        st.markdown("\n".join(f"- [{title}](#{anchor})" for anchor, title in SECTIONS))
        st.caption(f"Time budget per request: {state.time_budget_s():.0f} s. Nothing is fetched from the network.")
    return Page(info=info, num_beams=int(beams), max_new_tokens=int(max_tokens), image_format=fmt)


def analyze(page: Page, text: str, messages) -> None:
    """Canonicalize, then run (or fetch from the cache) the analysis without the caption; problems are
    shown in place."""
    if not text or not text.strip():
        messages.info("Draw a molecule, type a SMILES or pick an example.")
        return
    try:
        mol = parse(text, page.info.max_atoms)          # canonical SMILES before anything else
    except MoleculeError as exc:
        messages.error(f"**Not a molecule HSA-Net can analyze:** {exc}", icon=":material/error:")
        return
    if mol.smiles != text.strip():
        messages.caption(f"Canonical SMILES: `{mol.smiles}`")
    try:
        page.trace = state.get_trace(page.info.key, mol.smiles, page.num_beams, page.max_new_tokens,
                                     caption=False)
    except MoleculeError as exc:
        messages.error(f"**Not a molecule HSA-Net can analyze:** {exc}", icon=":material/error:")
    except state.BudgetExceeded as exc:
        messages.warning(str(exc), icon=":material/timer:")
        messages.button("Check again", key="budget_retry")
    except Exception as exc:   # keep the app running whatever happens in the model
        messages.error(f"HSA-Net failed on this molecule ({type(exc).__name__}: {exc}).", icon=":material/error:")


def add_caption(page: Page, messages) -> None:
    """The second pass: the same analysis with the caption (cached on its own); on failure the page
    keeps the first pass's trace and says why there is no caption."""
    if page.trace is None or not page.info.has_decoder:
        return
    try:
        page.trace = state.get_trace(page.info.key, page.trace.smiles, page.num_beams, page.max_new_tokens)
    except state.BudgetExceeded as exc:
        messages.warning(str(exc), icon=":material/timer:")
        messages.button("Check again", key="caption_budget_retry")
    except Exception as exc:   # keep the app running whatever happens in the decoder
        messages.error(f"HSA-Net could not write a caption ({type(exc).__name__}: {exc}).",
                       icon=":material/error:")


def main() -> None:
    model, info = state.get_model()
    page = sidebar(info)
    st.title("HSA-Net Explorer")
    st.caption("A molecular graph-language model, layer by layer: GNN levels → Hierarchical Adaptive Projector "
               "(attention or Graph-Mamba per level) → Source-Aware Fusion → caption. "
               "Shao et al., AAAI-26.")
    if info.notice:
        st.warning(info.notice, icon=":material/warning:")
    text, messages = input_view.render(page, model)
    analyze(page, text, messages)
    if page.trace is not None and info.has_decoder:     # the caption is written while the views render
        state.prefetch_trace(info.key, page.trace.smiles, page.num_beams, page.max_new_tokens)
    molecule.render(page)
    caption_box = st.container()            # filled after the structural views, once the caption is written
    with caption_box:
        caption.header()
        pending = st.empty()
        if page.trace is not None and info.has_decoder:
            pending.caption(":hourglass_flowing_sand: Writing the caption…")
    for view in (oversmoothing, routing, saf, embedding):
        view.render(page)
    with caption_box:
        add_caption(page, st.container())
        pending.empty()
        caption.body(page)
    for view in (ablation, runtime, export):
        view.render(page)


main()
