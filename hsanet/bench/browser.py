"""The app in a real browser, shared by ``hsanet bench --sections app`` and the browser tests:
Debian's Chromium with its flags, a free local port, the ``streamlit run`` command line of the app,
and its health check."""
from __future__ import annotations

import socket
import sys
import urllib.request
from pathlib import Path

from hsanet.paths import REPO_ROOT

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
APP = REPO_ROOT / "app" / "main.py"


def chromium_available() -> bool:
    return Path(CHROMIUM).exists()


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def app_command(port: int) -> list[str]:
    """``streamlit run app/main.py`` on 127.0.0.1:port, headless, no usage statistics, no file watcher."""
    return [sys.executable, "-m", "streamlit", "run", str(APP), "--server.port", str(port),
            "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false",
            "--server.fileWatcherType", "none"]


def healthy(url: str, timeout: float = 5.0) -> bool:
    """Whether the Streamlit server at ``url`` answers its health check."""
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=timeout) as r:
            return r.status == 200
    except OSError:
        return False
