"""7. Embedding map: the reference set's precomputed UMAP map at a chosen stage, the current molecule
placed on it, colour by a chosen field, hover captions and structure pictures, selection showing the
structure; the nearest reference molecules with their captions.

ReferenceSet API (hsanet.reference.store): ``stages``, ``table``, ``coords(stage)``, ``place(trace, stage)``,
``nearest(trace, stage, k)``.
"""
from __future__ import annotations

import json
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
TEXT_COLUMNS = ("smiles", "caption", "description", "cid")
PROJECTIONS = {"UMAP": "umap", "PCA": "pca"}
CLUSTER, HAP, ATOMS = "cluster (k-means at this stage)", "HAP pattern", "heavy atoms"
MAP_KEY = "map_chart"
# Hovering a reference point shows its structure picture (as molplotly does) next to the hover label:
# a page script listens to the chart's plotly_hover events and shows app/static/<folder>/<row>.png.
_HOVER_JS = """<script>
(() => {
  window.__hsanetPictures = new URL(%s + '/', document.baseURI).href;
  if (window.__hsanetHover) return;
  window.__hsanetHover = true;
  const tip = document.createElement('div');
  tip.dataset.testid = 'hsanet-structure-tip';
  tip.style.cssText = 'position:fixed;z-index:100000;pointer-events:none;display:none;background:#fff;' +
    'border:1px solid #bbb;border-radius:6px;box-shadow:0 2px 8px rgba(0,0,0,.25);padding:2px';
  const img = document.createElement('img');
  img.width = 200; img.height = 150; img.alt = 'structure of the hovered molecule';
  img.onerror = () => { tip.style.display = 'none'; };
  tip.appendChild(img);
  document.body.appendChild(tip);
  const attach = () => {
    for (const gd of document.querySelectorAll('.st-key-%s .js-plotly-plot')) {
      if (gd.__hsanetHover || !gd.on) continue;
      gd.__hsanetHover = true;
      gd.on('plotly_hover', (ev) => {
        const p = ev.points && ev.points[0];
        const row = p ? p.customdata : undefined;
        if (row === undefined || row === null || Array.isArray(row)) { tip.style.display = 'none'; return; }
        img.src = window.__hsanetPictures + row + '.png';
        const e = ev.event || {clientX: 0, clientY: 0};
        tip.style.left = (e.clientX > 260 ? e.clientX - 224 : e.clientX + 24) + 'px';
        tip.style.top = Math.max(4, e.clientY - 160) + 'px';
        tip.style.display = 'block';
      });
      gd.on('plotly_unhover', () => { tip.style.display = 'none'; });
    }
  };
  attach();
  setInterval(attach, 500);
})();
</script>"""


def hover_script(pictures: str) -> str:
    """The page script that shows a hovered point's picture from ``app/static/<pictures>/``."""
    return _HOVER_JS % (json.dumps("app/static/" + pictures), MAP_KEY)


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
    taken = set(fields.values())
    for c in ref.table.columns:             # any other field that can colour a map (not free text)
        values = ref.table[c]
        if c in taken or c in TEXT_COLUMNS or str(c).startswith("cluster "):
            continue
        if pd.api.types.is_numeric_dtype(values) or values.astype(str).nunique() <= MAX_CATEGORIES:
            fields[str(c)] = c
    return fields


def _hover(text, width: int = 70, limit: int = 320) -> str:
    text = "" if text is None or (isinstance(text, float) and np.isnan(text)) else str(text)
    if len(text) > limit:
        text = text[:limit] + "…"
    return "<br>".join(textwrap.wrap(text, width)) or "(no caption)"


def figure(table: pd.DataFrame, coords: np.ndarray, field: str, here, stage, label: str | None = None,
           projection: str = "UMAP", neighbours=(), found=(), found_label: str = "", axis_note=("", "")) -> go.Figure:
    """The map: reference points coloured by ``table[field]`` (continuous or categorical), the current
    molecule as a star, its nearest reference molecules and the rows a search found ringed."""
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
    for rows, name, colour, size in ((list(found), found_label or "search", "#17becf", 16),
                                     (list(neighbours), "nearest to this molecule", "#d62728", 13)):
        if rows:
            fig.add_trace(go.Scatter(x=coords[rows, 0], y=coords[rows, 1], mode="markers", name=name,
                                     customdata=rows, text=[hover[i] for i in rows],
                                     hovertemplate="%{text}<extra>" + name + "</extra>",
                                     marker=dict(symbol="circle-open", size=size, color=colour,
                                                 line=dict(width=2.5))))
    if here is not None:
        fig.add_trace(go.Scatter(x=[here[0]], y=[here[1]], mode="markers", name="this molecule",
                                 marker=dict(symbol="star", size=22, color="#d62728",
                                             line=dict(color="black", width=1.5)),
                                 hovertemplate="this molecule<extra></extra>"))
    fig.update_layout(height=600, title=f"{projection} of {len(table):,} reference molecules, {stage_label(stage)}",
                      xaxis=dict(title=f"{projection} 1{axis_note[0]}", showticklabels=False),
                      yaxis=dict(title=f"{projection} 2{axis_note[1]}", showticklabels=False),
                      margin=dict(t=50, b=40, l=40, r=20),
                      legend=dict(itemsizing="constant", orientation="h", yanchor="top", y=-0.08, x=0))
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


@view("embedding", fragment=True)
def render(page: Page, tr: Trace) -> None:
    ref, why = state.reference_set()
    if ref is None:
        st.info(f"No reference set, so no map: {why}.")
        return
    table = ref.table
    stages = list(ref.stages)
    fields = colour_fields(ref)
    a, b, c, d = st.columns([3, 3, 2, 4])
    stage = a.selectbox("Stage", stages, key="map_stage", format_func=stage_label, index=len(stages) - 1,
                        help="level l pooled: the mean of the GNN node states; after HAP: the mean of the chosen "
                             "projector tokens; after SAF: the molecule embedding (mean of the fused tokens).")
    choice = b.selectbox("Colour by", list(fields), key="map_colour")
    projection = c.radio("Map", list(PROJECTIONS), key="map_projection", horizontal=True,
                         help="UMAP keeps neighbourhoods (non-linear); PCA is the linear view of the same "
                              "embeddings, with the share of variance on its axes.")
    query = d.text_input("Find on the map", key="map_find", placeholder="SMILES, PubChem CID or a word",
                         help="A molecule (any SMILES of it), a CID, or words of the descriptions and captions.")
    column = fields[choice](stage) if callable(fields[choice]) else fields[choice]
    proj = PROJECTIONS[projection]
    try:
        here = ref.place(tr, stage, projection=proj)
    except Exception as exc:   # e.g. a reference set built with another model
        here = None
        st.warning(f"This molecule cannot be placed on the map: {exc}")
    try:
        near = ref.nearest(tr, stage, 5)
    except Exception as exc:   # noqa: BLE001 - shown below the map
        near, near_error = None, exc
    found = ref.find(query) if query else []
    if query:
        st.caption(f"Found {len(found)} reference molecule{'s' if len(found) != 1 else ''} for “{query[:60]}”"
                   + (" (ringed in blue)." if found else "."))
    note = ("", "")
    if proj == "pca":
        ratio = ref.pca(stage).explained_variance_ratio_
        note = tuple(f" ({r:.0%} of variance)" for r in list(ratio) + [0.0] * (2 - len(ratio)))
    meta = ref.meta
    st.caption(f"Reference set: {len(table):,} molecules run through model `{meta.get('checkpoint', '?')}`"
               f"{'' if meta.get('trained', True) else ' (**untrained**)'}"
               f"{', built ' + str(meta['date'])[:10] if meta.get('date') else ''}; the map is precomputed, "
               "this molecule is placed among its nearest neighbours without refitting UMAP (on PCA: projected "
               "exactly); its five nearest reference molecules are ringed in red.")
    fig = figure(table, ref.projected(stage, proj), column, here, stage, label=choice, projection=projection,
                 neighbours=[int(i) for i in near.index] if near is not None else [], found=found,
                 found_label=f"found: {query[:30]}", axis_note=note)
    event = show_figure(page, "embedding-map", fig, key=MAP_KEY, on_select="rerun", selection_mode="points")
    pictures = state.reference_structures()
    if pictures:
        st.html(hover_script(pictures), unsafe_allow_javascript=True)
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
            if st.button("Analyze this molecule", key="map_analyze"):
                set_input(str(row["smiles"]))
                st.rerun()                  # the whole page, not only this view's fragment
    with right:
        st.markdown(f"**Nearest reference molecules** ({stage_label(stage)}: cosine after centring, and the "
                    "Tanimoto similarity of the structures)")
        if near is None:
            st.caption(f"Unavailable: {near_error}")
        else:
            show = [c for c in ("similarity", "tanimoto", "smiles", "caption", "description") if c in near.columns]
            st.dataframe(near[show], hide_index=True)
