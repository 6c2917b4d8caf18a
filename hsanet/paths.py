"""Where HSA-Net finds its data and its embedded default model.

The benchmark data (ChEBI-20, MoleculeNet, the SciBERT vocabulary) is never copied into this
repository: it is read from ``../shared/data`` beside the checkout, or from the folder named by
``--data-dir`` / the ``HSANET_DATA`` environment variable.
"""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
ASSETS = REPO_ROOT / "assets"
DEFAULT_CHECKPOINT = ASSETS / "hsanet-default"
ABLATION_DIR = ASSETS / "ablations"
REFERENCE_DIR = ASSETS / "reference"


def data_dir(override: str | os.PathLike | None = None) -> Path:
    """Return the data folder: ``override``, else ``$HSANET_DATA``, else ``../shared/data``."""
    if override:
        return Path(override).expanduser().resolve()
    env = os.environ.get("HSANET_DATA")
    if env:
        return Path(env).expanduser().resolve()
    return (REPO_ROOT.parent / "shared" / "data").resolve()


def require_data(relative: str, override: str | os.PathLike | None = None) -> Path:
    """Path of one data file, with a clear error naming the fix when it is missing."""
    path = data_dir(override) / relative
    if not path.exists():
        raise FileNotFoundError(
            f"data file not found: {path}. Point --data-dir or HSANET_DATA at the folder that "
            f"holds {relative} (by default ../shared/data beside the checkout)."
        )
    return path
