"""The two projector experts of HAP (Sec. 3.2): cross-attention (E_Attn) and Graph-Mamba (E_Mamba)."""
from .attn import CrossAttnProjector
from .mamba import GraphMambaProjector, StructureAwareMamba, serialize

__all__ = ["CrossAttnProjector", "GraphMambaProjector", "StructureAwareMamba", "serialize"]
