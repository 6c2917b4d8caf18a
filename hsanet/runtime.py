"""Process-level settings for inference on the CPU (not part of the paper).

:func:`tune_allocator` keeps freed memory in the process. With glibc's defaults every tensor of more
than a few MB is a fresh ``mmap`` that the kernel zero-fills page by page on first touch and takes
back on ``free``: embedding a batch of 256 drug-like molecules page-faulted 60-140 MB per call
(``ru_minflt``), every call. PyTorch's CPU performance guide recommends an allocator that caches
(jemalloc or TCMalloc); this does the same with glibc's own ``mallopt``: allocations of up to 32 MB
come from the heap and up to 1 GB of freed heap stays mapped. The ``hsanet`` command and the app
call it at start; a library user can too. Set ``HSANET_MALLOC_TUNING=0`` to leave the allocator as is.
"""
from __future__ import annotations

import ctypes
import os

M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3
_SETTINGS = ((M_MMAP_THRESHOLD, 32 << 20), (M_TRIM_THRESHOLD, 1 << 30), (M_TOP_PAD, 64 << 20))
_done = False


def tune_allocator() -> bool:
    """Apply the glibc settings above once per process; False where they do not apply (not glibc,
    or ``HSANET_MALLOC_TUNING=0``)."""
    global _done
    if _done:
        return True
    if os.environ.get("HSANET_MALLOC_TUNING", "1") == "0":
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _done = all(mallopt(param, value) == 1 for param, value in _SETTINGS)
    return _done
