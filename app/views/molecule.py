"""2. Molecule: the RDKit drawing with BRICS fragments, the Graph-Mamba scan order and the per-atom
change of node features between two levels.

Trace fields: ``smiles``, ``num_atoms``, ``num_fragments``, ``atom_fragment``, ``mamba_order``,
``atom_change(a, b)`` (from ``levels[*].node_states``), ``warnings``.
"""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app import draw
from hsanet.inference.trace import Trace
from app.views.common import Page, show_figure, view

FRAGMENTS, CHANGE, PLAIN = "BRICS fragments", "Feature change between two levels", "No colour"


@view("molecule", fragment=True)
def render(page: Page, tr: Trace) -> None:
    mol = draw.molecule(tr.smiles)
    if mol is None or mol.GetNumAtoms() != tr.num_atoms or len(tr.atom_fragment) != tr.num_atoms:
        st.warning("The drawing's atoms do not line up with the trace's atoms; overlays are off.")
        svg = draw.svg(tr.smiles)
        if svg:
            st.image(svg)
        return

    levels = [lv.level for lv in tr.levels]
    pic, controls = st.columns([3, 2], gap="large")
    with controls:
        colour = st.radio("Colour the atoms by", [FRAGMENTS, CHANGE, PLAIN], key="mol_colour")
        numbered = st.checkbox("Number the atoms in Graph-Mamba scan order", value=True, key="mol_scan")
        change = None
        if colour == CHANGE:
            la, lb = st.select_slider("Between levels", options=levels, value=(levels[0], levels[-1]),
                                      key="mol_levels", help="Levels of the GNN encoder; 0 = atom embeddings.")
            change = tr.atom_change(la, lb)
        st.markdown(f"**Canonical SMILES** `{tr.smiles}`")
        st.markdown(f"**{tr.num_atoms}** heavy atoms · **{len(set(tr.atom_fragment))}** BRICS fragments · "
                    f"**{tr.num_fragments}** disconnected part{'s' if tr.num_fragments != 1 else ''}")
        for w in tr.warnings:
            st.caption(f":warning: {w}")

    scan_pos = {int(atom): pos + 1 for pos, atom in enumerate(tr.mamba_order)}
    notes = {a: str(p) for a, p in scan_pos.items()} if numbered else None
    if colour == FRAGMENTS:
        svg = draw.svg(tr.smiles, draw.fragment_colours(tr.atom_fragment), notes,
                       colour_bonds_within=tr.atom_fragment)
    elif colour == CHANGE:
        svg = draw.svg(tr.smiles, draw.value_colours(change), notes)
    else:
        svg = draw.svg(tr.smiles, None, notes)
    with pic:
        st.image(svg, caption=_legend(colour, numbered, change, la if change is not None else None,
                                      lb if change is not None else None))
        if colour == FRAGMENTS:
            chips = " ".join(
                f"<span style='background:{draw.fragment_hex(f)};padding:1px 8px;border-radius:8px;"
                f"margin-right:4px'>fragment {f}</span>" for f in sorted(set(tr.atom_fragment)))
            st.html(f"<div style='font-size:0.85em;line-height:1.9'>{chips}</div>")

    if change is not None:
        # the drawing's numbers label the bars (scan positions when shown, else atom indices), in that
        # order, on the drawing's colour scale
        order = sorted(range(tr.num_atoms), key=lambda i: scan_pos.get(i, i)) if numbered else list(range(tr.num_atoms))
        label = (lambda i: f"{mol.GetAtomWithIdx(i).GetSymbol()}{scan_pos.get(i, i)}") if numbered else \
            (lambda i: f"{mol.GetAtomWithIdx(i).GetSymbol()}{i}")
        lo, hi = draw.value_range(change)
        values = [float(change[i]) for i in order]
        fig = go.Figure(go.Bar(
            x=[label(i) for i in order], y=values,
            marker=dict(color=values, colorscale=draw.CHANGE_SCALE, cmin=lo, cmax=hi if hi > lo else lo + 1e-9,
                        showscale=True, colorbar=dict(title="‖ΔH‖"))))
        fig.update_layout(title=f"Per-atom change of node features, level {la} → {lb}",
                          xaxis_title=("atom (element + scan position, as numbered in the drawing)" if numbered
                                       else "atom (element + atom index)"),
                          yaxis_title="‖H(b) − H(a)‖₂", height=300, margin=dict(t=40, b=40, l=50, r=20))
        show_figure(page, "atom-change", fig)

    with st.expander("Per-atom table"):
        table = pd.DataFrame({
            "atom": list(range(tr.num_atoms)),
            "element": [a.GetSymbol() for a in mol.GetAtoms()],
            "BRICS fragment": [int(f) for f in tr.atom_fragment],
            "scan position": [scan_pos.get(i) for i in range(tr.num_atoms)],
        })
        if change is not None:
            table[f"change {la}→{lb}"] = change
        st.dataframe(table, hide_index=True)


def _legend(colour: str, numbered: bool, change, la, lb) -> str:
    parts = []
    if colour == FRAGMENTS:
        parts.append("colours: BRICS fragments (the motif branch's units)")
    elif colour == CHANGE:
        lo, hi = draw.value_range(change)
        parts.append(f"colour: change of each atom's node features from level {la} to {lb}, on the bar chart's "
                     f"scale (palest = smallest, {lo:.3g}; dark red = largest, {hi:.3g})")
    if numbered:
        parts.append("numbers: position in the Graph-Mamba scan (fragment by fragment, then by degree)")
    return "; ".join(parts)
