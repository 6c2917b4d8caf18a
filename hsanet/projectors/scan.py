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
* ``selective_scan_readout``: only the last K outputs (what E_Mamba reads), in closed form
  without any scan: O(L D N) work and one exponential per element; the training path uses it.
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
    needed. With S_t = sum_{r<=t} Delta_r (per channel) and P the last step before the read-out:

        h_P = sum_{s<=P} exp(A (S_P - S_s)) Delta_s B_s u_s                 (one pass, O(L D N))
        h_t = exp(A (S_t - S_P)) h_P + sum_{P<s<=t} exp(A (S_t - S_s)) Delta_s B_s u_s   (t > P)

    Every exponent is <= 0 (S is non-decreasing, A < 0), so it is stable in float32; it equals the
    recurrence up to rounding. Returns (batch, D, num_out).
    """
    length = u.shape[-1]
    k = min(num_out, length)
    p = length - k - 1                                  # last step before the read-out (-1: none)
    S = torch.cumsum(delta, dim=-1)                     # (B, D, L)
    bu = delta * u                                      # (B, D, L)
    tail = slice(length - k, length)
    S_tail = S[..., tail]                               # (B, D, k)
    # tail-to-tail decays, lower triangular in (t, s)
    diff = (S_tail.unsqueeze(-1) - S_tail.unsqueeze(-2)).clamp_min(0)          # (B, D, k, k)
    tri = torch.tril(torch.ones(k, k, dtype=torch.bool, device=u.device))
    w_tail = torch.exp(diff.unsqueeze(-1) * A[None, :, None, None, :]) * tri[None, None, :, :, None]
    h = torch.einsum("bdtsn,bds,bns->bdtn", w_tail, bu[..., tail], B[..., tail])  # (B, D, k, N)
    if p >= 0:
        S_p = S[..., p:p + 1]                                                    # (B, D, 1)
        w_head = torch.exp((S_p - S[..., : p + 1]).unsqueeze(-1) * A[None, :, None, :])   # (B, D, p+1, N)
        h_p = torch.einsum("bdsn,bds,bns->bdn", w_head, bu[..., : p + 1], B[..., : p + 1])
        carry = torch.exp((S_tail - S_p).unsqueeze(-1) * A[None, :, None, :])            # (B, D, k, N)
        h = h + carry * h_p.unsqueeze(2)
    y = torch.einsum("bdtn,bnt->bdt", h, C[..., tail])
    if D is not None:
        y = y + u[..., tail] * D.unsqueeze(-1)
    if z is not None:
        y = y * F.silu(z[..., tail])
    return y


def selective_scan(u, delta, A, B, C, D=None, z=None):
    """Dispatch: mamba-ssm's kernel on CUDA when installed, else the exact PyTorch parallel scan."""
    if _mamba_kernel is not None and u.is_cuda:
        return _mamba_kernel(u.contiguous(), delta.contiguous(), A.contiguous(), B.contiguous(),
                             C.contiguous(), D, z.contiguous() if z is not None else None,
                             delta_bias=None, delta_softplus=False)
    return selective_scan_parallel(u, delta, A, B, C, D, z)
