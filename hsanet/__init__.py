"""HSA-Net Explorer: a reference implementation of HSA-Net (Shao et al., arXiv 2508.08334, AAAI-26).

Data flow, one package per stage of the paper's Figure 1 (docs/MODEL.md maps equations to code)::

    featurizers/ (parse, graph) -> nn/gin.py (GIN levels) -> nn/cross_attn.py | nn/graph_mamba.py
        -> nn/hap.py (Eqs. 2-3) -> nn/motif.py -> nn/saf.py (Eqs. 4-5) -> lm/ (Eq. 6) + nn/heads.py
        -> models/hsanet.py (HSANet) -> inference/ (analyze -> Trace)

``import hsanet`` has no side effects and imports nothing heavy: the names below load on first use.
The process settings of :mod:`hsanet.inference.runtime` are applied by the entry points (the
``hsanet`` command and the app), not here.
"""
from __future__ import annotations

from hsanet.lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "HSANet": "hsanet.models.hsanet", "CheckpointError": "hsanet.models.hsanet",
    "HSANetConfig": "hsanet.config", "Trace": "hsanet.inference.trace",
    "Molecule": "hsanet.featurizers.parse", "MoleculeError": "hsanet.featurizers.parse",
    "parse": "hsanet.featurizers.parse",
}
__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
