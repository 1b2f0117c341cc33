"""Wheels made by the kernel's own pip, so they fit its platform and use its pip settings:
local and editable installs built into wheels, and (``--wheels``) every pinned distribution
downloaded, for a snapshot folder that builds with no index at all.
"""

from __future__ import annotations

import os
import subprocess
import sys

__all__ = ["build_wheel", "download"]


def build_wheel(path: str, wheel_dir: str) -> int:
    """Build the project folder ``path`` into a wheel in ``wheel_dir``: pip's exit code, or -1
    when the folder is gone (the install can then not be reproduced)."""
    if not os.path.isdir(path):
        return -1
    argv = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", wheel_dir, path]
    # Quiet: pip's output would land in the user's notebook.
    return subprocess.run(argv, capture_output=True).returncode


def download(dest: str, pins_file: str) -> tuple[int, str]:
    """Download the files of every pin in ``pins_file`` into ``dest``: pip's exit code and the
    end of what it said."""
    argv = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", dest, "-r", pins_file]
    done = subprocess.run(argv, capture_output=True, text=True)
    return done.returncode, done.stderr[-800:]
