"""Process-level settings for inference on the CPU (not part of the paper).

:func:`tune_allocator` keeps freed memory in the process. With glibc's defaults every tensor of more
than a few MB is a fresh ``mmap`` that the kernel zero-fills page by page on first touch and takes
back on ``free``: embedding a batch of 256 drug-like molecules page-faulted 60-140 MB per call
(``ru_minflt``), every call. PyTorch's CPU performance guide recommends an allocator that caches
(jemalloc or TCMalloc); this does the same with glibc's own ``mallopt``: allocations of up to 32 MB
come from the heap and up to 1 GB of freed heap stays mapped. The ``hsanet`` command and the app
call it at start; a library user can too. Set ``HSANET_MALLOC_TUNING=0`` to leave the allocator as is.

:func:`defer_unused_imports` makes PyTorch Geometric's
``torch_geometric.datasets``, which HSA-Net never uses, load on first use instead of at import. PyG's
package ``__init__`` imports it, and it pulls in PyG's LLM/RAG code and with it all of
``transformers``, which HSA-Net needs only for its caption decoder; with
``HSANet.from_pretrained(defer_decoder=True)`` the app imports ``transformers`` only for its first
caption, after the first page is shown. It uses the standard library's
:class:`importlib.util.LazyLoader`, so ``from torch_geometric.datasets import QM9`` still works: the
module loads when first touched. Set ``HSANET_LAZY_IMPORTS=0`` to import it eagerly.

Both change the process, so the library never calls them on import: the entry points do, first
thing (the ``hsanet`` command in hsanet/cli/__init__.py, the app in app/main.py).
"""
from __future__ import annotations

import ctypes
import functools
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import threading

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


DEFERRED_MODULES = ("torch_geometric.datasets",)
_lazy_lock = threading.Lock()


class _LazyFinder(importlib.abc.MetaPathFinder):
    """Finds the modules in ``names`` with the usual path finder and wraps their loader in a
    :class:`importlib.util.LazyLoader`, once each."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = set(names)

    def find_spec(self, fullname, path, target=None):
        with _lazy_lock:
            if fullname not in self.names:
                return None
            self.names.discard(fullname)
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = importlib.util.LazyLoader(spec.loader)
        return spec


def defer_unused_imports() -> list[str]:
    """Make the :data:`DEFERRED_MODULES` not imported yet load on first attribute access; their names
    (empty with ``HSANET_LAZY_IMPORTS=0``, when all are loaded already, or on a second call)."""
    if os.environ.get("HSANET_LAZY_IMPORTS", "1") == "0":
        return []
    if any(isinstance(finder, _LazyFinder) for finder in sys.meta_path):
        return []
    names = tuple(name for name in DEFERRED_MODULES if name not in sys.modules)
    if names:
        sys.meta_path.insert(0, _LazyFinder(names))
    return list(names)


_BLAS_CONTROLLER = None


def serial_blas(func):
    """Run ``func`` with single-threaded BLAS.

    For the small matrices of one molecule (over-smoothing metrics, Tanimoto against a few thousand
    fingerprints) multi-threaded OpenBLAS gains nothing and slows down five- to tenfold when the cores
    are busy; its threads also keep spinning after the call and slow PyTorch's next operations
    (measured: analysis of a 30-atom molecule 133 ms with the applicability-domain Tanimoto on
    multi-threaded BLAS, 38 ms on one thread).
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        global _BLAS_CONTROLLER
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # optional: scikit-learn brings it
            return func(*args, **kwargs)
        if _BLAS_CONTROLLER is None:
            _BLAS_CONTROLLER = ThreadpoolController()
        with _BLAS_CONTROLLER.limit(limits=1, user_api="blas"):
            return func(*args, **kwargs)

    return wrapper
