"""10. Export: the full report as JSON (``Trace.to_json()``, the object ``hsanet analyze --json``
prints) and the plots as PNG or SVG.

Every plot's toolbar (camera icon) downloads it in the browser, in the format chosen in the sidebar.
The buttons here render server-side with kaleido and the system's Chromium; plotly.js comes from the
plotly package and MathJax is switched off, so nothing is fetched from the network.
"""
from __future__ import annotations

import json
import re

import streamlit as st

from hsanet.inference.trace import Trace
from app.views.common import Page, view


def file_stem(smiles: str) -> str:
    return "hsanet-" + (re.sub(r"[^A-Za-z0-9]+", "_", smiles).strip("_")[:40] or "molecule")


@st.cache_data(max_entries=64, show_spinner="Rendering the figure…")
def render_image(fig_json: str, fmt: str) -> bytes:
    """PNG or SVG bytes of a plotly figure (kaleido, no network)."""
    import kaleido
    import plotly.io as pio

    fig = pio.from_json(fig_json)
    layout = fig.layout
    opts = dict(format=fmt, width=layout.width or 1000, height=layout.height or 600, scale=2 if fmt == "png" else 1)
    return kaleido.calc_fig_sync(fig.to_dict(), opts=opts, kopts={"mathjax": False})


@view("export")
def render(page: Page, tr: Trace) -> None:
    stem = file_stem(tr.smiles)
    report = json.dumps(tr.to_json(), indent=2, ensure_ascii=False)
    a, b = st.columns(2, gap="large")
    with a:
        st.markdown("**Full report** (the object `hsanet analyze --json` prints)")
        st.download_button("Download report (JSON)", report, file_name=f"{stem}.json", mime="application/json",
                           key="export_json", on_click="ignore", type="primary")
        with st.expander("Preview"):
            st.code(report[:6000] + ("\n…" if len(report) > 6000 else ""), language="json")
    with b:
        st.markdown("**Plots** — every plot's toolbar (camera icon) downloads it as "
                    f"{page.image_format.upper()} (change the format in the sidebar). Or render one here:")
        if not page.figures:
            st.caption("No plots on this page yet.")
            return
        name = st.selectbox("Plot", list(page.figures), key="export_fig")
        fmt = st.radio("Format", ["png", "svg"], horizontal=True, key="export_fmt")
        if st.button("Render for download", key="export_render"):
            try:
                st.session_state["export_image"] = (name, fmt, tr.smiles,
                                                    render_image(page.figures[name].to_json(), fmt))
            except Exception as exc:   # no Chromium, or kaleido failed
                st.session_state.pop("export_image", None)
                st.warning(f"Server-side rendering is unavailable here ({type(exc).__name__}: {exc}). Use the "
                           "camera icon in the plot's toolbar instead.")
        done = st.session_state.get("export_image")
        if done and done[0] == name and done[1] == fmt and done[2] == tr.smiles:
            st.download_button(f"Download {name}.{fmt}", done[3], file_name=f"{stem}-{name}.{fmt}",
                               mime="image/svg+xml" if fmt == "svg" else "image/png", key="export_image_dl",
                               on_click="ignore")
