"""Selective state-space scan of Mamba (Gu & Dao 2023, Alg. 2), the core of E_Mamba (Sec. 3.2).

For channel c and state n, with input u, step size Delta, diagonal A, input-dependent B and C:

    h_t = exp(Delta_t A) h_{t-1} + Delta_t B_t u_t,        y_t = C_t . h_t + D u_t

Three backends compute the same thing:

* ``selective_scan_ref``: the plain step-by-step recurrence (a Python loop over time; tests and
  benchmarks only).
* ``selective_scan_parallel``: an exact parallel form with no loop over time steps: a
  Hillis-Steele prefix scan of the affine maps h -> a_t h + b_t, ceil(log2 L) rounds of whole-tensor
  operations, O(L log L) work, float32-stable because every decay a_t = exp(Delta_t A) is <= 1.
  (A log-space cumsum, h_t = exp(S_t) sum_s exp(-S_s) b_s, was tried: it needs float64 to avoid
  overflow and ran 4x slower on CPU; the quadratic Mamba-2 form needs a scalar A per channel.)
* ``selective_scan_readout``: only the last K outputs (what E_Mamba reads): the state before the
  read-out in closed form without any scan (O(L D N) work, one exponential per element, padded
  steps skipped), then K recurrence steps; the training path uses it.
* mamba-ssm's fused CUDA kernel ``selective_scan_fn`` when the package imports and the tensors are
  on CUDA (optional GPU extra; it cannot be installed without CUDA).

Shapes follow mamba-ssm: u, delta (B, D, L); A (D, N); B, C (B, N, L); D (D,); z (B, D, L) or None.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

try:  # optional GPU kernel
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn as _mamba_kernel  # type: ignore
except Exception:  # noqa: BLE001 - any import failure means "not available"
    _mamba_kernel = None

def kernel_available() -> bool:
    return _mamba_kernel is not None and torch.cuda.is_available()


def backend_for(device: torch.device | str) -> str:
    """Name of the backend that a scan on ``device`` uses."""
    if _mamba_kernel is not None and torch.device(device).type == "cuda":
        return "mamba-ssm CUDA kernel"
    return "PyTorch parallel scan"


def selective_scan_ref(u, delta, A, B, C, D=None, z=None):
    """Step-by-step recurrence (reference)."""
    dtype = u.dtype
    u, delta, A, B, C = (t.float() for t in (u, delta, A, B, C))
    batch, dim, length = u.shape
    h = u.new_zeros(batch, dim, A.shape[1])
    dA = torch.exp(delta.unsqueeze(-1) * A[None, :, None, :])     # (B, D, L, N)
    dBu = delta.unsqueeze(-1) * B.transpose(1, 2).unsqueeze(1) * u.unsqueeze(-1)
    ys = []
    for t in range(length):
        h = dA[:, :, t] * h + dBu[:, :, t]
        ys.append(torch.einsum("bdn,bn->bd", h, C[:, :, t]))
    y = torch.stack(ys, dim=-1)
    if D is not None:
        y = y + u * D.float().unsqueeze(-1)
    if z is not None:
        y = y * F.silu(z.float())
    return y.to(dtype)


def selective_scan_parallel(u, delta, A, B, C, D=None, z=None):
    """Exact parallel scan: Hillis-Steele prefix scan over (decay, input) pairs, no loop over time.

    The recurrence h_t = a_t h_{t-1} + b_t composes associatively, (a2, b2) o (a1, b1) =
    (a2 a1, a2 b1 + b2). After round r every position holds the composition of the last 2^r
    steps, so ceil(log2 L) rounds of whole-tensor products give every h_t. Decays a_t =
    exp(Delta_t A) lie in (0, 1], so the products are stable in float32.
    """
    dA = torch.exp(delta.unsqueeze(-1) * A[None, :, None, :])                        # (B, D, L, N)
    h = delta.unsqueeze(-1) * B.transpose(1, 2).unsqueeze(1) * u.unsqueeze(-1)        # (B, D, L, N)
    length, step = u.shape[-1], 1
    while step < length:
        h = torch.cat([h[:, :, :step], h[:, :, step:] + dA[:, :, step:] * h[:, :, :-step]], dim=2)
        if step * 2 < length:
            dA = torch.cat([dA[:, :, :step], dA[:, :, step:] * dA[:, :, :-step]], dim=2)
        step *= 2
    y = torch.einsum("bdln,bnl->bdl", h, C)
    if D is not None:
        y = y + u * D.unsqueeze(-1)
    if z is not None:
        y = y * F.silu(z)
    return y


def selective_scan_readout(u, delta, A, B, C, D=None, z=None, num_out: int = 1):
    """Outputs of the last ``num_out`` steps only, exactly, with no scan over the sequence.

    E_Mamba reads its tokens at the end of the sequence, so the states of earlier steps are never
    needed. With S_t = sum_{r<=t} Delta_r (per channel) and P the last step before the read-out,
    the state at P is one weighted sum (O(L D N) work, one exponential per element):

        h_P = sum_{s<=P} exp(A (S_P - S_s)) Delta_s B_s u_s

    and the ``num_out`` read-out steps after P follow the recurrence from h_P. Every exponent is
    <= 0 (S is non-decreasing, A < 0), so it is stable in float32; it equals the recurrence up to
    rounding. Steps with Delta = 0 in every channel (left padding) add nothing to h_P and are
    skipped, so a padded batch costs what its real atoms cost. Returns (batch, D, num_out).
    """
    length = u.shape[-1]
    k = min(num_out, length)
    p = length - k - 1                                  # last step before the read-out (-1: none)
    bu = delta * u                                      # (B, D, L)
    h = _readout_state(delta[..., : p + 1], bu[..., : p + 1], A, B[..., : p + 1]) if p >= 0 else None
    ys = []
    for t in range(length - k, length):                 # h_t = exp(Delta_t A) h_{t-1} + Delta_t B_t u_t
        inp = bu[..., t, None] * B[:, None, :, t]                                # (B, D, N)
        h = inp if h is None else torch.exp(delta[..., t, None] * A) * h + inp
        ys.append((h * C[:, None, :, t]).sum(-1))                                # (B, D)
    y = torch.stack(ys, dim=-1)
    if D is not None:
        y = y + u[..., length - k:] * D.unsqueeze(-1)
    if z is not None:
        y = y * F.silu(z[..., length - k:])
    return y


def _readout_state(delta, bu, A, B):
    """h_P = sum_s exp(A (S_P - S_s)) Delta_s B_s u_s over the steps given; (batch, D, N)."""
    # x_s = S_P - S_s = sum_{s<r<=P} Delta_r as a suffix sum: no cancellation of two large sums
    after = torch.cat([delta[..., 1:], torch.zeros_like(delta[..., :1])], dim=-1)
    x = torch.flip(torch.cumsum(torch.flip(after, [-1]), dim=-1), [-1])            # (B, D, P), >= 0
    # only the (batch, step) pairs with some Delta != 0: padded steps add nothing
    bi, si = (delta != 0).any(1).nonzero(as_tuple=True)
    flat = bi * delta.shape[-1] + si                    # rows of the (batch * steps, D|N) views
    x, bu, B = (t.transpose(1, 2).reshape(-1, t.shape[1]).index_select(0, flat) for t in (x, bu, B))   # (M, D|N)
    h = x.new_zeros(delta.shape[0], A.shape[0], A.shape[1])
    if torch.is_grad_enabled() and any(t.requires_grad for t in (x, bu, A, B)):
        w = torch.exp((x.unsqueeze(-1) * A).clamp_min(_MIN_EXPONENT)) * bu.unsqueeze(-1) * B.unsqueeze(1)   # (M, D, N)
        return h.index_add(0, bi, w)
    # inference: the (M, D, N) terms in blocks that stay in the CPU cache, computed in place
    rows = max(1, _BLOCK // (A.shape[0] * A.shape[1]))
    for s in range(0, x.shape[0], rows):
        e = min(s + rows, x.shape[0])
        w = (x[s:e, :, None] * A).clamp_min_(_MIN_EXPONENT).exp_().mul_(bu[s:e, :, None]).mul_(B[s:e, None, :])
        h.index_add_(0, bi[s:e], w)
    return h


_BLOCK = 1 << 17            # elements per block of the inference read-out (512 KiB of float32)
# Decays below exp(-80) ~ 2e-35 are clamped there: such terms are far below the float32 resolution of
# the state, and PyTorch's exp takes a 10-35x slower path where its result underflows (x < -87),
# which made long molecules cost more per atom than short ones.
_MIN_EXPONENT = -80.0


def selective_scan(u, delta, A, B, C, D=None, z=None):
    """Dispatch: mamba-ssm's kernel on CUDA when installed, else the exact PyTorch parallel scan."""
    if _mamba_kernel is not None and u.is_cuda:
        return _mamba_kernel(u.contiguous(), delta.contiguous(), A.contiguous(), B.contiguous(),
                             C.contiguous(), D, z.contiguous() if z is not None else None,
                             delta_bias=None, delta_softplus=False)
    return selective_scan_parallel(u, delta, A, B, C, D, z)
