"""HSA-Net Explorer: a reference implementation of HSA-Net (Shao et al., arXiv 2508.08334, AAAI-26).

Data flow, one module per box of the paper's Figure 1::

    chem/ (parse, featurize) -> encoder.py (GIN levels) -> projectors/ (E_Attn, E_Mamba) -> hap.py
        -> motif.py -> saf.py -> lm/ (caption decoder) + heads.py -> model.py (HSANet) -> trace.py
"""
from .runtime import defer_unused_imports

defer_unused_imports()     # before anything imports torch_geometric (see hsanet/runtime.py)

from .chem import Molecule, MoleculeError, parse  # noqa: E402
from .config import HSANetConfig  # noqa: E402
from .model import CheckpointError, HSANet  # noqa: E402
from .trace import Trace  # noqa: E402

__version__ = "0.1.0"
__all__ = ["HSANet", "HSANetConfig", "Trace", "Molecule", "MoleculeError", "parse", "CheckpointError"]
