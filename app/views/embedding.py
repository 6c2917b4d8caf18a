"""7. Embedding map: the reference set's precomputed UMAP map at a chosen stage, the current molecule
placed on it, colour by a chosen field, hover captions, selection showing the structure; the nearest
reference molecules with their captions.

ReferenceSet API (hsanet.reference.store): ``stages``, ``table``, ``coords(stage)``, ``place(trace, stage)``,
``nearest(trace, stage, k)``.
"""
from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app import draw, state
from hsanet.inference.trace import Trace
from app.views.common import Page, show_figure, view
from app.views.input import set_input

MAX_CATEGORIES = 24
CLUSTER, HAP, ATOMS = "cluster (k-means at this stage)", "HAP pattern", "heavy atoms"


def stage_label(stage) -> str:
    s = str(stage)
    return f"{s} pooled" if s.startswith("level ") else s


def colour_fields(ref) -> dict[str, object]:
    """Colour choices -> a column name, or a function of the stage giving it (clusters are per stage)."""
    from hsanet.reference.store import cluster_column

    fields: dict[str, object] = {}
    columns = set(ref.table.columns)
    for p in getattr(ref, "property_columns", []):
        if p in columns:
            fields[f"predicted {p}"] = p
    fields[CLUSTER] = cluster_column
    if "hap_pattern" in columns:
        fields[HAP] = "hap_pattern"
    if "heavy_atoms" in columns:
        fields[ATOMS] = "heavy_atoms"
    return fields


def _hover(text, width: int = 70, limit: int = 320) -> str:
    text = "" if text is None or (isinstance(text, float) and np.isnan(text)) else str(text)
    if len(text) > limit:
        text = text[:limit] + "…"
    return "<br>".join(textwrap.wrap(text, width)) or "(no caption)"


def figure(table: pd.DataFrame, coords: np.ndarray, field: str, here, stage, label: str | None = None) -> go.Figure:
    """The map: reference points coloured by ``table[field]`` (continuous or categorical), and a star."""
    label = label or str(field)
    coords = np.asarray(coords, dtype=float)
    captions = table["caption"] if "caption" in table.columns else pd.Series([""] * len(table))
    smiles = table["smiles"] if "smiles" in table.columns else pd.Series([""] * len(table))
    hover = [f"<b>{_hover(s, 60, 120)}</b><br>{_hover(c)}" for s, c in zip(smiles, captions)]
    values = table[field]
    fig = go.Figure()
    continuous = pd.api.types.is_numeric_dtype(values) and values.nunique() > MAX_CATEGORIES
    if continuous:
        fig.add_trace(go.Scatter(
            x=coords[:, 0], y=coords[:, 1], mode="markers", customdata=np.arange(len(table)), name="reference",
            text=hover, hovertemplate="%{text}<br>" + f"{label}: " + "%{marker.color:.3g}<extra></extra>",
            marker=dict(size=6, color=values.astype(float), colorscale="Viridis", showscale=True, opacity=0.75,
                        colorbar=dict(title=label))))
    else:
        cats = values.astype(str)
        for cat in sorted(cats.unique(), key=lambda c: (len(c), c)):
            idx = np.flatnonzero((cats == cat).to_numpy())
            fig.add_trace(go.Scatter(
                x=coords[idx, 0], y=coords[idx, 1], mode="markers", customdata=idx, name=f"{label} = {cat}",
                text=[hover[i] for i in idx], hovertemplate="%{text}<extra>" + f"{label} = {cat}</extra>",
                marker=dict(size=6, opacity=0.75)))
    if here is not None:
        fig.add_trace(go.Scatter(x=[here[0]], y=[here[1]], mode="markers", name="this molecule",
                                 marker=dict(symbol="star", size=22, color="#d62728",
                                             line=dict(color="black", width=1.5)),
                                 hovertemplate="this molecule<extra></extra>"))
    fig.update_layout(height=560, title=f"UMAP of {len(table):,} reference molecules, {stage_label(stage)}",
                      xaxis=dict(title="UMAP 1", showticklabels=False), yaxis=dict(title="UMAP 2", showticklabels=False),
                      margin=dict(t=50, b=30, l=30, r=20), legend=dict(itemsizing="constant"))
    return fig


def _selected_rows(event) -> list[int]:
    try:
        points = event.selection.points if hasattr(event, "selection") else event["selection"]["points"]
    except (KeyError, TypeError, AttributeError):
        return []
    rows = []
    for p in points or []:
        cd = p.get("customdata") if isinstance(p, dict) else None
        if isinstance(cd, (list, tuple)):
            cd = cd[0] if cd else None
        if cd is not None:
            rows.append(int(cd))
    return rows


@view("embedding")
def render(page: Page, tr: Trace) -> None:
    ref, why = state.reference_set()
    if ref is None:
        st.info(f"No reference set, so no map: {why}.")
        return
    table = ref.table
    stages = list(ref.stages)
    fields = colour_fields(ref)
    a, b = st.columns(2)
    stage = a.selectbox("Stage", stages, key="map_stage", format_func=stage_label, index=len(stages) - 1,
                        help="level l pooled: the mean of the GNN node states; after HAP: the mean of the chosen "
                             "projector tokens; after SAF: the molecule embedding (mean of the fused tokens).")
    choice = b.selectbox("Colour by", list(fields), key="map_colour")
    column = fields[choice](stage) if callable(fields[choice]) else fields[choice]
    try:
        here = ref.place(tr, stage)
    except Exception as exc:   # e.g. a reference set built with another model
        here = None
        st.warning(f"This molecule cannot be placed on the map: {exc}")
    meta = ref.meta
    st.caption(f"Reference set: {len(table):,} molecules run through model `{meta.get('checkpoint', '?')}`"
               f"{'' if meta.get('trained', True) else ' (**untrained**)'}"
               f"{', built ' + str(meta['date'])[:10] if meta.get('date') else ''}; the map is precomputed, "
               "this molecule is placed among its nearest neighbours without refitting UMAP.")
    fig = figure(table, ref.coords(stage), column, here, stage, label=choice)
    event = show_figure(page, "embedding-map", fig, key="map_chart", on_select="rerun", selection_mode="points")
    picked = _selected_rows(event)
    left, right = st.columns(2, gap="large")
    with left:
        st.markdown("**Selected reference molecule**")
        if not picked:
            st.caption("Click a point on the map to see its structure and caption.")
        else:
            row = table.iloc[picked[0]]
            svg = draw.svg(str(row.get("smiles", "")), width=360, height=260)
            if svg:
                st.image(svg)
            st.markdown(f"`{row.get('smiles', '')}`" + (f" · CID {row['cid']}" if row.get("cid") else ""))
            if row.get("caption"):
                st.markdown(f"**Generated caption:** {row['caption']}")
            if row.get("description"):
                st.markdown(f"**ChEBI-20 description:** {row['description']}")
            st.button("Analyze this molecule", key="map_analyze", on_click=set_input, args=(str(row["smiles"]),))
    with right:
        st.markdown(f"**Nearest reference molecules** ({stage_label(stage)}: cosine after centring, and the "
                    "Tanimoto similarity of the structures)")
        try:
            near = ref.nearest(tr, stage, 5)
        except Exception as exc:
            st.caption(f"Unavailable: {exc}")
        else:
            show = [c for c in ("similarity", "tanimoto", "smiles", "caption", "description") if c in near.columns]
            st.dataframe(near[show], hide_index=True)
