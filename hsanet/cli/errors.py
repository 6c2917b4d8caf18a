"""The command line's user errors: one line on stderr and exit code 2, never a traceback."""
from __future__ import annotations


class UsageError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


def check_at_least(*checks: tuple[str, int | None, int]) -> None:
    """``(flag, value, lowest)`` triples: a value below its lowest is a UsageError (None: not given)."""
    for flag, value, low in checks:
        if value is not None and value < low:
            raise UsageError(f"{flag} must be at least {low} (got {value})")


def check_device(device: str | None, flag: str = "--device") -> None:
    """A torch device the machine has (None: the default choice)."""
    if not device:
        return
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise UsageError(f"{flag} {device}: not a device; use cpu or cuda (cuda:N for one GPU)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"{flag} {device}: no CUDA GPU is available on this machine; use cpu")
    if dev.type not in ("cpu", "cuda"):
        raise UsageError(f"{flag} {device}: HSA-Net runs on cpu or cuda")


def check_strategy(strategy: str | None, flag: str = "--strategy") -> None:
    """A Lightning strategy name (``auto`` or one of Lightning's registry)."""
    if not strategy or strategy == "auto":
        return
    from lightning.pytorch.strategies import StrategyRegistry

    names = StrategyRegistry.available_strategies()
    if strategy not in names:
        import difflib

        near = difflib.get_close_matches(strategy, names, n=1)
        hint = f"did you mean {near[0]!r}?" if near else "e.g. auto, ddp, ddp_spawn, fsdp"
        raise UsageError(f"{flag} {strategy}: not a Lightning strategy; {hint}")
