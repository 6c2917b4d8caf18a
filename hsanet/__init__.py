"""HSA-Net Explorer: a reference implementation of HSA-Net (Shao et al., arXiv 2508.08334, AAAI-26).

Data flow, one module per box of the paper's Figure 1::

    chem/ (parse, featurize) -> encoder.py (GIN levels) -> projectors/ (E_Attn, E_Mamba) -> hap.py
        -> motif.py -> saf.py -> lm/ (caption decoder) + heads.py -> model.py (HSANet) -> trace.py
"""
from .chem import Molecule, MoleculeError, parse
from .config import HSANetConfig
from .model import CheckpointError, HSANet
from .trace import Trace

__version__ = "0.1.0"
__all__ = ["HSANet", "HSANetConfig", "Trace", "Molecule", "MoleculeError", "parse", "CheckpointError"]
