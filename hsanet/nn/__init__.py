"""The neural network of HSA-Net, one module per part of the paper (docs/MODEL.md):

* :mod:`~hsanet.nn.gin`: the GIN encoder, levels H^(0..L) (Sec. 3.1, Eq. 1)
* :mod:`~hsanet.nn.query_block`: the Q-Former-style query block shared by E_Attn and the motif branch
* :mod:`~hsanet.nn.cross_attn`: E_Attn; :mod:`~hsanet.nn.graph_mamba`: E_Mamba, on
  :mod:`~hsanet.nn.selective_scan` (Sec. 3.2)
* :mod:`~hsanet.nn.hap`: HAP, the gate per level (Eqs. 2-3)
* :mod:`~hsanet.nn.motif`: motif tokens; :mod:`~hsanet.nn.saf`: SAF (Eqs. 4-5)
* :mod:`~hsanet.nn.heads`: property heads
"""
