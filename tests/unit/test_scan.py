"""Tests of hsanet.nn.selective_scan: the exact parallel scan and the read-out agree with the recurrence.

Item 6 of the issue: ``selective_scan_parallel`` vs ``selective_scan_ref`` on random float32 inputs,
outputs and gradients of every input (u, delta, A, B, C, D, z), lengths 1, 7 (not a power of two)
and 256. Absolute gradients reach ~100, so the tolerance is relative and absolute, 1e-5 each.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hsanet.nn.selective_scan import (backend_for, kernel_available, selective_scan, selective_scan_parallel,
                                    selective_scan_readout, selective_scan_ref)

TOL = dict(rtol=1e-5, atol=1e-5)
NAMES = ("u", "delta", "A", "B", "C", "D", "z")


def random_inputs(length: int, batch: int = 2, dim: int = 4, state: int = 8, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    return {
        "u": r(batch, dim, length),
        "delta": F.softplus(r(batch, dim, length) - 1.0),     # positive step sizes, as in Mamba
        "A": -torch.exp(r(dim, state) * 0.5),                  # negative real diagonal
        "B": r(batch, state, length),
        "C": r(batch, state, length),
        "D": r(dim),
        "z": r(batch, dim, length),
    }


def run_with_grads(fn, inputs: dict, weight: torch.Tensor, **kw):
    leaves = {k: v.clone().requires_grad_(True) for k, v in inputs.items()}
    y = fn(*(leaves[k] for k in NAMES), **kw)
    (y * weight).sum().backward()
    # an input the output does not depend on gets no grad (A at length 1: no state is carried)
    return y.detach(), {k: v.grad if v.grad is not None else torch.zeros_like(v) for k, v in leaves.items()}


@pytest.mark.parametrize("length", [1, 2, 7, 64, 256])
def test_parallel_matches_reference(length):
    inputs = random_inputs(length, seed=length)
    weight = torch.randn(2, 4, length, generator=torch.Generator().manual_seed(1))
    y_ref, g_ref = run_with_grads(selective_scan_ref, inputs, weight)
    y_par, g_par = run_with_grads(selective_scan_parallel, inputs, weight)
    assert y_par.dtype == torch.float32
    torch.testing.assert_close(y_par, y_ref, **TOL)
    for name in NAMES:
        assert length == 1 and name == "A" or g_ref[name].abs().sum() > 0, name
        torch.testing.assert_close(g_par[name], g_ref[name], **TOL, msg=lambda m: f"grad of {name}: {m}")


@pytest.mark.parametrize("length, num_out", [(1, 4), (4, 4), (7, 4), (9, 1), (256, 4)])
def test_readout_matches_reference_tail(length, num_out):
    inputs = random_inputs(length, seed=100 + length)
    k = min(num_out, length)
    weight = torch.randn(2, 4, k, generator=torch.Generator().manual_seed(2))
    y_ref, g_ref = run_with_grads(lambda *a: selective_scan_ref(*a)[..., -k:], inputs, weight)
    y_out, g_out = run_with_grads(selective_scan_readout, inputs, weight, num_out=num_out)
    assert y_out.shape == (2, 4, k)
    torch.testing.assert_close(y_out, y_ref, **TOL)
    for name in NAMES:
        torch.testing.assert_close(g_out[name], g_ref[name], **TOL, msg=lambda m: f"grad of {name}: {m}")


def test_without_optional_D_and_z():
    inputs = random_inputs(7)
    args = [inputs[k] for k in ("u", "delta", "A", "B", "C")]
    torch.testing.assert_close(selective_scan_parallel(*args), selective_scan_ref(*args), **TOL)
    torch.testing.assert_close(selective_scan_readout(*args, num_out=3), selective_scan_ref(*args)[..., -3:], **TOL)


@pytest.mark.parametrize("fn", [selective_scan_ref, selective_scan_parallel])
def test_zero_delta_steps_leave_state_untouched(fn):
    """Left padding: steps with Delta = 0 (any input) do not change the state of the later steps."""
    length, pad = 9, 5
    inputs = random_inputs(length)
    padded = {k: v.clone() for k, v in inputs.items()}
    for k in ("u", "delta", "B", "C", "z"):
        garbage = torch.randn(*v.shape[:-1], pad) if (v := inputs[k]) is not None else None
        padded[k] = torch.cat([garbage, v], dim=-1)
    padded["delta"][..., :pad] = 0.0
    args = [padded[k] for k in NAMES]
    torch.testing.assert_close(fn(*args)[..., pad:], fn(*(inputs[k] for k in NAMES)), **TOL)
    torch.testing.assert_close(selective_scan_readout(*args, num_out=4),
                               selective_scan_ref(*(inputs[k] for k in NAMES))[..., -4:], **TOL)


def test_dispatch_on_cpu_is_parallel_scan():
    inputs = random_inputs(7)
    args = [inputs[k] for k in NAMES]
    torch.testing.assert_close(selective_scan(*args), selective_scan_parallel(*args))
    assert backend_for("cpu") == "PyTorch parallel scan"


@pytest.mark.skipif(not kernel_available(), reason="mamba-ssm CUDA kernel not installed")
def test_cuda_kernel_matches_reference():  # pragma: no cover - needs a GPU with mamba-ssm
    inputs = random_inputs(64)
    args = [inputs[k] for k in NAMES]
    y = selective_scan(*(a.cuda() for a in args)).cpu()
    torch.testing.assert_close(y, selective_scan_ref(*args), rtol=1e-4, atol=1e-4)
