"""9. Runtime: the device, the Mamba backend and the time each stage took for this molecule.

Trace fields: ``device``, ``mamba_backend``, ``timings_ms``, ``variant``, ``trained``.
"""
from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from hsanet.inference.trace import Trace
from app.views.common import Page, show_figure, view

STAGE_NAMES = {"parse": "parse SMILES", "featurize": "featurize graph", "encoder": "GNN encoder",
               "projectors_hap": "HAP projectors + motif", "saf": "SAF fusion", "metrics": "over-smoothing metrics",
               "caption": "caption decoding"}


def figure(timings: dict) -> go.Figure:
    names = list(timings)
    fig = go.Figure(go.Bar(y=[STAGE_NAMES.get(n, n) for n in names], x=[timings[n] for n in names],
                           orientation="h", marker_color="#17becf",
                           hovertemplate="%{y}: %{x:.1f} ms<extra></extra>"))
    fig.update_layout(height=300, xaxis_title="milliseconds", yaxis=dict(autorange="reversed"),
                      title=f"Time per stage (total {sum(timings.values()):.0f} ms)",
                      margin=dict(t=50, b=40, l=20, r=20))
    return fig


@view("runtime")
def render(page: Page, tr: Trace) -> None:
    a, b, c = st.columns([2, 3, 1])
    a.metric("Device", tr.device.upper() if tr.device == "cpu" else tr.device)
    b.metric("Graph-Mamba backend", tr.mamba_backend)
    c.metric("Total", f"{sum(tr.timings_ms.values()) / 1000:.2f} s")
    if tr.timings_ms:
        show_figure(page, "runtime", figure(tr.timings_ms))
    st.caption(f"Model variant `{tr.variant}`, {'trained' if tr.trained else 'untrained'}; {page.decoding}. "
               "Times are those of the first analysis of this molecule with these options (later views of it "
               "come from the cache).")
