"""Reading the reference set's precomputed statistics (hsanet.reference.store.ReferenceSet) for plotting.

``hsanet reference build`` computes them; this module only picks them out of the ReferenceSet and
returns None where a statistic is absent, so that a view says so instead of failing.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def level_band(ref, metric: str) -> pd.DataFrame | None:
    """Rows per level with median, q25, q75 of ``metric`` over the reference set (``ReferenceSet.band``)."""
    if ref is None:
        return None
    try:
        band = ref.band(metric)
    except (ValueError, KeyError, AttributeError):
        return None
    band = band.dropna(subset=["median", "q25", "q75"])
    return band if len(band) else None


def mamba_share(ref) -> pd.Series | None:
    """Share of reference molecules routed to E_Mamba, indexed by level."""
    values = getattr(ref, "mamba_share", None) if ref is not None else None
    if values is None or len(values) == 0:
        return None
    return pd.Series(np.asarray(values, dtype=float), name="mamba share")


def mean_p_mamba(ref) -> pd.Series | None:
    values = getattr(ref, "mean_p_mamba", None) if ref is not None else None
    if values is None or len(values) == 0:
        return None
    return pd.Series(np.asarray(values, dtype=float), name="mean p(E_Mamba)")


def expert_usage(ref) -> pd.DataFrame | None:
    """Fraction of top-k assignments per expert: a row "all tokens", then one row per token source."""
    usage = getattr(ref, "expert_usage", None) if ref is not None else None
    if not usage or not usage.get("num_experts") or not usage.get("overall"):
        return None
    rows = {"all tokens": usage["overall"]}
    by_source = usage.get("by_source") or {}

    def order(source: str):
        parts = source.split()
        return (source == "motif", int(parts[1]) if len(parts) == 2 and parts[1].isdigit() else 0, source)

    for source in sorted(by_source, key=order):
        rows[source] = by_source[source]
    return pd.DataFrame.from_dict(rows, orient="index",
                                  columns=[f"expert {e}" for e in range(int(usage["num_experts"]))])
