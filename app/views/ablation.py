"""8. Ablation compare: the molecule through the app's model, then attn-only, mamba-only, no-SAF and full,
side by side, each column naming the checkpoint it comes from.

Uses ``assets/ablations/<variant>`` when present (the shipped four, full included, share one recipe:
docs/RESULTS.md); otherwise full is the app's model, attn/mamba force HAP's routing on its weights
(``HSANet.analyze(routing=...)``) and no-SAF says that no checkpoint exists.
Trace fields: ``caption``, ``hap_pattern``, ``levels[*].metrics``, ``levels[*].choice``, ``trained``.
"""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from app import state
from hsanet.inference.trace import Trace
from app.views.common import METRIC_LABELS, Page, show_figure, view

TITLES = {"model": "The app's model", "attn": "Attention only", "mamba": "Mamba only", "nosaf": "No SAF",
          "full": "Full HSA-Net"}
COLOURS = {"model": "#2ca02c", "attn": "#1f77b4", "mamba": "#ff7f0e", "nosaf": "#9467bd", "full": "#d62728"}


def metrics_figure(results) -> go.Figure:
    metrics = list(METRIC_LABELS)
    fig = make_subplots(rows=1, cols=4, subplot_titles=[METRIC_LABELS[m] for m in metrics], horizontal_spacing=0.07)
    for r in results:
        if r.trace is None:
            continue
        for k, m in enumerate(metrics):
            fig.add_trace(go.Scatter(x=[lv.level for lv in r.trace.levels],
                                     y=[lv.metrics.get(m, float("nan")) for lv in r.trace.levels],
                                     mode="lines+markers", name=TITLES[r.variant], legendgroup=r.variant,
                                     showlegend=k == 0, line=dict(color=COLOURS[r.variant])), 1, k + 1)
            fig.update_xaxes(title_text="level", dtick=1, row=1, col=k + 1)
    fig.update_layout(height=330, margin=dict(t=50, b=40, l=40, r=20), legend=dict(orientation="h", y=-0.25))
    return fig


@view("ablation", fragment=True)
def render(page: Page, tr: Trace) -> None:
    request = (tr.smiles, page.num_beams, page.max_new_tokens)
    if st.session_state.get("compare_for") != request:
        st.caption("Runs this molecule through the four variants (up to three more analyses).")
        if not st.button("Compare attn-only, mamba-only, no-SAF and full", key="compare_run"):
            return
        st.session_state["compare_for"] = request
    results = [state.model_column(page.info.key, tr.smiles, page.num_beams, page.max_new_tokens)]
    results += [state.variant_trace(v, page.info.key, tr.smiles, page.num_beams, page.max_new_tokens)
                for v in state.VARIANTS]
    cols = st.columns(len(results), gap="medium")
    for col, r in zip(cols, results):
        with col:
            st.markdown(f"#### {TITLES[r.variant]}")
            st.caption(r.label)
            if r.trace is None:
                st.info(r.message)
                continue
            if r.message:
                st.caption(r.message)
            st.markdown(f"**Routing** `{r.trace.hap_pattern}` (A = E_Attn, M = E_Mamba per level)")
            st.markdown("**Caption**")
            st.markdown(f"> {r.trace.caption}" if r.trace.caption else "_no caption_")
            last = r.trace.levels[-1].metrics
            st.dataframe(pd.DataFrame([{"metric (last level)": METRIC_LABELS[m], "value": last.get(m)}
                                       for m in METRIC_LABELS]), hide_index=True)
    if any(r.trace is not None for r in results):
        show_figure(page, "ablation-metrics", metrics_figure(results))
        if not any(state.ablation_folder(v).is_dir() for v in ("attn", "mamba", "nosaf")):
            st.caption("Without ablation checkpoints all columns share the full model's GNN, so the over-smoothing "
                       "curves coincide; routing and captions differ.")
