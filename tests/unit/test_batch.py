"""hsanet.inference.batch: many molecules under a time budget, one row each, errors kept per row, the
user's own columns kept; run_with_budget's shared, budgeted jobs."""
from __future__ import annotations

import threading
import time

import pytest

from hsanet.inference.batch import BudgetExceeded, run_batch, run_with_budget


def test_rows_keep_order_errors_and_user_columns(small_model):
    inputs = ["CCO", "C1CC", "Cl.NNc1ccccc1", "c1ccccc1"]
    extra = [{"name": "ethanol"}, {"name": "broken"}, {"name": "salt", "caption": "mine"}, {"name": "benzene"}]
    seen = []
    res = run_batch(small_model, inputs, caption=False, chunk=2, extra=extra,
                    progress=lambda done, total: seen.append((done, total)))
    rows = res["rows"]
    assert [r["row"] for r in rows] == [1, 2, 3, 4] and [r["input"] for r in rows] == inputs
    assert list(rows[0])[:3] == ["row", "error", "name"]
    assert [bool(r["error"]) for r in rows] == [False, True, False, False] and "ring" in rows[1]["error"]
    assert rows[2]["input caption"] == "mine" and rows[2]["caption"] == ""      # a clash gets "input "
    salt = rows[2]
    assert salt["disconnected_parts"] == 2 and salt["brics_fragments"] >= 2 and salt["heavy_atoms"] == 9
    assert seen[-1] == (4, 4) and res["stopped"] is None


def test_budget_marks_the_rest(small_model):
    res = run_batch(small_model, ["CCO"] * 5, caption=False, chunk=1, budget_s=0.0)
    assert res["stopped"] == {"done": 0, "total": 5, "budget_s": 0.0}
    assert all("time budget" in r["error"] for r in res["rows"]) and len(res["rows"]) == 5


def test_run_with_budget_shares_a_running_job_and_keeps_it_running():
    gate, calls = threading.Event(), []

    def slow():
        calls.append(1)
        gate.wait(5)
        return 42

    with pytest.raises(BudgetExceeded):
        run_with_budget("k", slow, 0.05)
    with pytest.raises(BudgetExceeded):
        run_with_budget("k", slow, 0.05)                 # the same job, not a second one
    gate.set()
    assert run_with_budget("k", slow, 5) == 42 and len(calls) == 1
    time.sleep(0.01)
    assert run_with_budget("k", lambda: 7, 5) == 7       # done jobs are forgotten
