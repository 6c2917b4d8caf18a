"""4. Over-smoothing: MAD, Dirichlet energy, effective rank and mean cosine similarity per level,
against the reference set's median and inter-quartile band.

Trace fields: ``levels[*].level``, ``levels[*].metrics``; reference: ``ReferenceSet.level_stats``.
"""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from app import state
from app.views import refdata
from hsanet.inference.trace import Trace
from app.views.common import METRIC_LABELS, Page, show_figure, view

MOLECULE_COLOUR = "#d62728"
BAND_COLOUR = "rgba(31,119,180,0.18)"
MEDIAN_COLOUR = "rgba(31,119,180,0.9)"


def figure(trace, ref=None) -> go.Figure:
    metrics = list(METRIC_LABELS)
    fig = make_subplots(rows=2, cols=2, subplot_titles=[METRIC_LABELS[m] for m in metrics],
                        horizontal_spacing=0.1, vertical_spacing=0.22)
    levels = [lv.level for lv in trace.levels]
    for k, metric in enumerate(metrics):
        row, col = k // 2 + 1, k % 2 + 1
        band = refdata.level_band(ref, metric)
        if band is not None:
            fig.add_trace(go.Scatter(x=band["level"], y=band["q75"], mode="lines", line=dict(width=0),
                                     hoverinfo="skip", showlegend=False, legendgroup="band"), row, col)
            fig.add_trace(go.Scatter(x=band["level"], y=band["q25"], mode="lines", line=dict(width=0),
                                     fill="tonexty", fillcolor=BAND_COLOUR, name="reference 25–75 %",
                                     legendgroup="band", showlegend=k == 0,
                                     hovertemplate="q25 %{y:.3g}<extra>reference</extra>"), row, col)
            fig.add_trace(go.Scatter(x=band["level"], y=band["median"], mode="lines",
                                     line=dict(color=MEDIAN_COLOUR, dash="dash"), name="reference median",
                                     legendgroup="median", showlegend=k == 0,
                                     hovertemplate="median %{y:.3g}<extra>reference</extra>"), row, col)
        values = [lv.metrics.get(metric, float("nan")) for lv in trace.levels]
        fig.add_trace(go.Scatter(x=levels, y=values, mode="lines+markers", name="this molecule",
                                 line=dict(color=MOLECULE_COLOUR, width=3), legendgroup="mol",
                                 showlegend=k == 0,
                                 hovertemplate="level %{x}: %{y:.4g}<extra>this molecule</extra>"), row, col)
        fig.update_xaxes(title_text="GNN level", dtick=1, row=row, col=col)
    fig.update_layout(height=620, margin=dict(t=50, b=40, l=50, r=20),
                      legend=dict(orientation="h", y=-0.12))
    return fig


@view("oversmoothing")
def render(page: Page, tr: Trace) -> None:
    if not any(lv.metrics for lv in tr.levels):
        st.info("This trace carries no over-smoothing metrics.")
        return
    ref, why = state.reference_set()
    if ref is None:
        st.caption(f"No reference band: {why}.")
    show_figure(page, "oversmoothing", figure(tr, ref))
    with st.expander("All metrics per level (MADGap, normalized Dirichlet energy, numerical rank too)"):
        st.dataframe(pd.DataFrame([{"level": lv.level, **lv.metrics} for lv in tr.levels]), hide_index=True)
