"""One switch for the inference fast paths (docs/BENCHMARKS.md); not part of the paper.

Each fast path sits beside the plain computation it speeds up, in the same module, and gives the
same outputs up to float32 rounding (tests/unit/test_fast_paths.py compares them):

* nn/gin.py: in eval mode each batch norm is folded into its Linear, the categorical embeddings are
  one ``embedding_bag``, large batches compute one state per Weisfeiler-Lehman colour, and the MLPs
  run in row blocks;
* nn/hap.py: in eval mode only the expert HAP chose runs, per molecule;
* nn/graph_mamba.py: on the CPU, E_Mamba's K read-out steps come from the closed-form read-out
  (nn/selective_scan.py ``selective_scan_readout``) instead of the full scan.

``HSANET_FAST_PATHS=0`` turns them off for a process; ``with plain():`` for a block (tests, bench).
"""
from __future__ import annotations

import os
from contextlib import contextmanager

_enabled = os.environ.get("HSANET_FAST_PATHS", "1") != "0"


def enabled() -> bool:
    """Whether the fast paths are on (the default)."""
    return _enabled


def set_enabled(on: bool) -> None:
    global _enabled
    _enabled = bool(on)


@contextmanager
def plain():
    """Run a block on the plain paths only."""
    before = _enabled
    set_enabled(False)
    try:
        yield
    finally:
        set_enabled(before)
