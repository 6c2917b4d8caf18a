"""What every view gets: the page context, section headers with anchors, and figure display."""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

import plotly.graph_objects as go
import streamlit as st

from app import state
from app.state import ModelInfo
from app.teaching import explain
from hsanet.inference.trace import Trace

# (anchor, title) of the views, top to bottom; the sidebar's "jump to" links use the anchors.
SECTIONS = [
    ("input", "1. Input"),
    ("molecule", "2. Molecule"),
    ("caption", "3. Caption and properties"),
    ("oversmoothing", "4. Over-smoothing"),
    ("routing", "5. HAP routing"),
    ("saf", "6. Source-Aware Fusion"),
    ("embedding", "7. Embedding map"),
    ("ablation", "8. Ablation compare"),
    ("runtime", "9. Runtime"),
    ("export", "10. Export"),
]
TITLES = dict(SECTIONS)
METRIC_LABELS = {
    "mad": "MAD",
    "dirichlet_energy": "Dirichlet energy",
    "effective_rank": "Effective rank",
    "mean_cosine": "Mean cosine similarity",
}


@dataclass
class Page:
    """The state one script run renders: the model, the options and the current trace."""

    info: ModelInfo
    num_beams: int = 1
    max_new_tokens: int | None = None
    image_format: str = "png"
    trace: Trace | None = None
    figures: dict[str, go.Figure] = field(default_factory=dict)

    @property
    def decoding(self) -> str:
        return "greedy" if self.num_beams <= 1 else f"beam search ({self.num_beams} beams)"


def section(key: str) -> None:
    """A view's header (with its anchor for jumping) and, in teaching mode, its explanation."""
    st.header(TITLES[key], anchor=key, divider="gray")
    explain(key)


def needs_trace(page: Page) -> bool:
    """True when there is a trace to show; otherwise a one-line hint."""
    if page.trace is None:
        st.caption("Enter a molecule in **1. Input** to see this view.")
        return False
    return True


def view(key: str, fragment: bool = False):
    """Decorator of a view's ``render(page, trace)``: the section header, then the view, or a one-line
    hint when there is no molecule yet. The decorated function is called as ``render(page)``.

    ``fragment``: the view body is a Streamlit fragment (``st.fragment``), so that its own widgets
    (a colour choice, a slider, the map's controls) rerun this view alone, not the whole page."""
    def wrap(fn):
        body = st.fragment(fn) if fragment else fn

        @functools.wraps(fn)
        def render(page: Page) -> None:
            section(key)
            if needs_trace(page):
                body(page, page.trace)
        return render
    return wrap


def show_figure(page: Page, name: str, fig: go.Figure, key: str | None = None, **kwargs):
    """Show a plotly figure (its toolbar downloads it as PNG or SVG) and register it for export."""
    page.figures[name] = fig
    config = {"displaylogo": False,
              "toImageButtonOptions": {"format": page.image_format, "filename": f"hsanet-{name}", "scale": 2}}
    return st.plotly_chart(fig, config=config, key=key or f"fig-{name}", width="stretch", **kwargs)


def reference_statistic(pick, what: str):
    """(reference set, ``pick(reference set)``) for a statistic of the reference set; when it is absent
    (None), an info line says what is missing and why."""
    ref, why = state.reference_set()
    value = pick(ref)
    if value is None:
        st.info(f"{what} over the reference set: {why or 'not in this reference set'}.")
    return ref, value
