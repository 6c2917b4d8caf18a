"""Many molecules at once, for the app's batch mode and its live views (not part of the paper).

* :func:`run_with_budget`: run a job in a process-wide worker pool and wait at most a time budget
  for it; a second request for the same key while the first runs waits on the same job, and a job
  that overruns keeps running (its result is there when asked again).
* :func:`run_batch`: analyze a list of inputs in chunks under a time budget; a chunk that fails is
  redone molecule by molecule so that one bad molecule costs only its own row; every row keeps its
  error message; rows left when the budget is spent are marked, not dropped.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Callable, Sequence

from hsanet.featurizers import MoleculeError, parse

BATCH_CHUNK = 8          # molecules per analyze() call in a batch
WORKERS = 4

_pool: ThreadPoolExecutor | None = None
_jobs: dict = {}
_lock = threading.Lock()


class BudgetExceeded(RuntimeError):
    """The job is still running after its time budget (it keeps running)."""

    def __init__(self, budget_s: float) -> None:
        super().__init__(f"not finished within the time budget of {budget_s:.0f} s (still running)")
        self.budget_s = budget_s


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="hsanet-worker")
        return _pool


def run_with_budget(key: Any, fn: Callable[[], Any], budget_s: float) -> Any:
    """``fn()`` run in the worker pool; waits at most ``budget_s`` seconds. Raises
    :class:`BudgetExceeded` when it is still running then (it keeps running under ``key``)."""
    pool = _executor()
    with _lock:
        fut: Future | None = _jobs.get(key)
        if fut is None:
            fut = pool.submit(fn)
            _jobs[key] = fut
    try:
        return fut.result(timeout=budget_s)
    except FutureTimeout:
        raise BudgetExceeded(budget_s) from None
    finally:
        if fut.done():
            with _lock:
                if _jobs.get(key) is fut:
                    del _jobs[key]


OUR_COLUMNS = ("row", "error", "input", "smiles", "heavy_atoms", "brics_fragments", "disconnected_parts",
               "hap_pattern", "caption")


def result_row(number: int, text: str, trace=None, error: str = "", extra: dict | None = None) -> dict:
    """One row of a batch result: the row number and the error first (empty when it worked), the
    user's own columns (``extra``; a name that clashes with ours gets the prefix ``input ``), then
    the input, the canonical SMILES, the counts (heavy atoms; BRICS fragments, as the molecule view
    counts them; disconnected parts, e.g. the ions of a salt), HAP pattern, caption and one
    ``pred: <task>`` column per property head."""
    row = {"row": number, "error": error}
    for key, value in (extra or {}).items():
        row[f"input {key}" if key in OUR_COLUMNS or key.startswith("pred: ") else key] = value
    row.update({"input": text, "smiles": "", "heavy_atoms": None, "brics_fragments": None,
                "disconnected_parts": None, "hap_pattern": "", "caption": ""})
    if trace is not None:
        row.update(smiles=trace.smiles, heavy_atoms=trace.num_atoms,
                   brics_fragments=len(set(trace.atom_fragment)) if trace.atom_fragment else 0,
                   disconnected_parts=trace.num_fragments, hap_pattern=trace.hap_pattern,
                   caption=trace.caption or "")
        for name, value in trace.properties.items():
            row[f"pred: {name}"] = value
    return row


def run_batch(model, inputs: Sequence[str], caption: bool = True, num_beams: int = 1,
              max_new_tokens: int | None = None, budget_s: float = float("inf"), chunk: int = BATCH_CHUNK,
              progress: Callable[[int, int], None] | None = None, extra: Sequence[dict] | None = None) -> dict:
    """Analyze every input (``model.analyze`` without the over-smoothing metrics); ``extra``: the
    user's other columns, one dict per input, kept in the rows.

    Returns ``{"rows": [...], "stopped": None or {"done", "total", "budget_s"}, "seconds"}``, one row
    per input in input order (:func:`result_row`); ``progress(done, total)`` after every chunk."""
    n = len(inputs)
    rows: list[dict | None] = [None] * n
    valid = []
    for i, text in enumerate(inputs):
        try:
            valid.append((i, parse(text, model.config.max_atoms)))
        except MoleculeError as exc:
            rows[i] = result_row(i + 1, text, error=str(exc), extra=_extra(extra, i))
    start = time.perf_counter()
    done = n - len(valid)
    stopped = None
    kwargs = dict(caption=caption, num_beams=num_beams, max_new_tokens=max_new_tokens, metrics=False)
    for j in range(0, len(valid), chunk):
        if time.perf_counter() - start > budget_s:
            stopped = {"done": done, "total": n, "budget_s": budget_s}
            for i, _ in valid[j:]:
                rows[i] = result_row(i + 1, inputs[i], error="not analyzed: batch time budget exceeded",
                                     extra=_extra(extra, i))
            break
        part = valid[j:j + chunk]
        try:
            traces = model.analyze([m for _, m in part], **kwargs)
        except Exception:   # isolate the molecule that fails
            traces = []
            for _, m in part:
                try:
                    traces.append(model.analyze(m, **kwargs))
                except Exception as exc:  # noqa: BLE001 - reported in its row
                    traces.append(exc)
        for (i, _), tr in zip(part, traces):
            if isinstance(tr, Exception):
                rows[i] = result_row(i + 1, inputs[i], error=f"{type(tr).__name__}: {tr}", extra=_extra(extra, i))
            else:
                rows[i] = result_row(i + 1, inputs[i], tr, extra=_extra(extra, i))
        done += len(part)
        if progress is not None:
            progress(done, n)
    return {"rows": [r for r in rows if r is not None], "stopped": stopped, "seconds": time.perf_counter() - start}


def _extra(extra: Sequence[dict] | None, i: int) -> dict | None:
    return extra[i] if extra is not None and i < len(extra) else None
