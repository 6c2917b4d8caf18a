"""6. Source-Aware Fusion: tokens x experts with the top-2 weights, tokens labelled by source;
expert usage over the reference set.

Trace fields: ``saf_tokens[*].index``, ``source``, ``experts``, ``weights``, ``probs``,
``num_experts``; reference: ``ReferenceSet.expert_usage``.
"""
from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from app.views import refdata
from hsanet.inference.trace import Trace
from app.views.common import reference_statistic, Page, show_figure, view

TOP_K, ALL = "top-2 weights (Eq. 5)", "full router softmax (Eq. 4)"


def heatmap(trace, mode: str = TOP_K) -> go.Figure:
    n = trace.num_experts
    labels = [f"#{t.index} · {t.source}" for t in trace.saf_tokens]
    z, text = [], []
    for t in trace.saf_tokens:
        if mode == ALL and t.probs:
            row = [float(p) for p in t.probs]
        else:
            row = [0.0] * n
            for e, w in zip(t.experts, t.weights):
                row[int(e)] = float(w)
        z.append(row)
        text.append([f"{v:.2f}" if v > 0 else "" for v in row])
    fig = go.Figure(go.Heatmap(
        z=z, x=[f"expert {e}" for e in range(n)], y=labels, text=text, texttemplate="%{text}",
        colorscale="Blues", zmin=0, zmax=1, colorbar=dict(title="weight"),
        hovertemplate="token %{y}<br>%{x}: %{z:.3f}<extra></extra>"))
    fig.update_layout(height=max(320, 22 * len(labels) + 90), yaxis=dict(autorange="reversed", title="token · source"),
                      title=f"SAF routing: {len(labels)} tokens × {n} experts ({mode})",
                      margin=dict(t=50, b=40, l=20, r=20))
    return fig


def usage_figure(usage) -> go.Figure:
    """Reference expert usage: share of top-k assignments per expert, over all tokens and by source."""
    fig = go.Figure(go.Heatmap(
        z=usage.to_numpy(), x=list(usage.columns), y=list(usage.index), colorscale="Greens", zmin=0,
        text=[[f"{v:.0%}" for v in row] for row in usage.to_numpy()], texttemplate="%{text}",
        colorbar=dict(title="share"), hovertemplate="%{y} → %{x}: %{z:.1%}<extra></extra>"))
    fig.update_layout(height=max(260, 24 * len(usage) + 110), yaxis=dict(autorange="reversed"),
                      title=dict(text="Reference set: expert usage<br><sup>share of the top-k assignments</sup>"),
                      margin=dict(t=50, b=40, l=20, r=20))
    return fig


@view("saf", fragment=True)
def render(page: Page, tr: Trace) -> None:
    if tr.num_experts == 0 or not tr.saf_tokens or not any(t.experts for t in tr.saf_tokens):
        st.info("This model has no SAF router (the no-SAF variant fuses with one MLP), so there is nothing "
                "to route.")
        return
    left, right = st.columns([3, 2], gap="large")
    with left:
        mode = st.radio("Show", [TOP_K, ALL], horizontal=True, key="saf_mode")
        show_figure(page, "saf-routing", heatmap(tr, mode))
    with right:
        _, usage = reference_statistic(refdata.expert_usage, "Expert usage")
        if usage is not None:
            show_figure(page, "expert-usage", usage_figure(usage))
        sources = sorted({t.source for t in tr.saf_tokens}, key=lambda s: (s == "motif", s))
        st.markdown("**Top-1 expert by source** (this molecule)")
        st.dataframe([{"source": s, "top-1 experts": ", ".join(
            str(t.experts[0]) for t in tr.saf_tokens if t.source == s and t.experts)} for s in sources],
            hide_index=True)
