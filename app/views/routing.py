"""5. HAP routing: the gate probabilities of E_Attn and E_Mamba per level and the choice; beside it
the reference set's Mamba share per level (the paper's Fig. 5).

Trace fields: ``levels[*].p_attn``, ``p_mamba``, ``choice``, ``hap_pattern``; reference:
``ReferenceSet.mamba_share``.
"""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app.views import refdata
from hsanet.inference.trace import Trace
from app.views.common import reference_statistic, Page, show_figure, view

ATTN, MAMBA = "#1f77b4", "#ff7f0e"


def gate_figure(trace) -> go.Figure:
    levels = [f"level {lv.level}" for lv in trace.levels]
    fig = go.Figure()
    fig.add_trace(go.Bar(x=levels, y=[lv.p_attn for lv in trace.levels], name="p(E_Attn)", marker_color=ATTN,
                         hovertemplate="%{x}: p(E_Attn) = %{y:.3f}<extra></extra>"))
    fig.add_trace(go.Bar(x=levels, y=[lv.p_mamba for lv in trace.levels], name="p(E_Mamba)", marker_color=MAMBA,
                         hovertemplate="%{x}: p(E_Mamba) = %{y:.3f}<extra></extra>"))
    for x, lv in zip(levels, trace.levels):
        fig.add_annotation(x=x, y=1.04, text="<b>M</b>" if lv.choice == "mamba" else "<b>A</b>", showarrow=False,
                           font=dict(color=MAMBA if lv.choice == "mamba" else ATTN, size=15))
    fig.add_hline(y=0.5, line=dict(color="grey", dash="dot", width=1))
    fig.update_layout(barmode="stack", height=380, yaxis=dict(range=[0, 1.1], title="gate probability"),
                      title=f"Gate per level and choice (pattern {trace.hap_pattern})",
                      margin=dict(t=50, b=40, l=50, r=20), legend=dict(orientation="h", y=-0.15))
    return fig


def share_figure(trace, share: pd.Series, mean_p: pd.Series | None = None) -> go.Figure:
    fig = go.Figure(go.Bar(x=[f"level {l}" for l in share.index], y=share.to_numpy(), marker_color=MAMBA,
                           opacity=0.75, name="reference: share routed to E_Mamba",
                           hovertemplate="%{x}: %{y:.1%} of reference molecules<extra></extra>"))
    if mean_p is not None:
        fig.add_trace(go.Scatter(x=[f"level {l}" for l in mean_p.index], y=mean_p.to_numpy(), mode="lines+markers",
                                 line=dict(color="grey", dash="dash"), name="reference: mean p(E_Mamba)",
                                 hovertemplate="%{x}: mean p(E_Mamba) %{y:.3f}<extra></extra>"))
    fig.add_trace(go.Scatter(x=[f"level {lv.level}" for lv in trace.levels],
                             y=[1.0 if lv.choice == "mamba" else 0.0 for lv in trace.levels],
                             mode="markers", marker=dict(symbol="star", size=14, color="#d62728"),
                             name="this molecule (1 = Mamba)"))
    fig.update_layout(height=380, yaxis=dict(range=[0, 1.1], title="share routed to E_Mamba", tickformat=".0%"),
                      title=dict(text="Reference set: Mamba share per level<br><sup>the paper's Fig. 5</sup>"),
                      margin=dict(t=50, b=40, l=50, r=20), legend=dict(orientation="h", y=-0.15))
    return fig


@view("routing")
def render(page: Page, tr: Trace) -> None:
    left, right = st.columns(2, gap="large")
    with left:
        show_figure(page, "hap-routing", gate_figure(tr))
        st.dataframe(pd.DataFrame([{"level": lv.level, "p(E_Attn)": round(lv.p_attn, 4),
                                    "p(E_Mamba)": round(lv.p_mamba, 4), "choice": lv.choice}
                                   for lv in tr.levels]), hide_index=True)
        if "forced" in tr.variant or tr.variant in ("attn", "mamba"):
            st.caption(f"Variant `{tr.variant}`: the gate is overridden.")
    with right:
        ref, share = reference_statistic(refdata.mamba_share, "Mamba share per level")
        if share is not None:
            show_figure(page, "mamba-share", share_figure(tr, share, refdata.mean_p_mamba(ref)))
            trend = ref.mamba_trend() if hasattr(ref, "mamba_trend") else None
            if trend:
                st.caption(f"**This model** (reference set, {trend['levels']} levels): the Mamba share "
                           f"{trend['direction']} with depth, {trend['first']:.0%} at level 0 and "
                           f"{trend['last']:.0%} at level {trend['levels'] - 1} (Spearman ρ {trend['rho']:+.2f}). "
                           "The paper's Fig. 5 has it rising.")
