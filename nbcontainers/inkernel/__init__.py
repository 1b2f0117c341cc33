"""Code that runs inside the user's kernel (local or container), sent there as source.

Nothing here is imported by the kernel: the host reads these files, joins a module's source
(:func:`nbcontainers.sources.bundle`) and runs it in a fresh module in the kernel, so the user's
namespace keeps no name of ours. Each module is stdlib-only at import time and imports no
sibling except through the relative imports a bundle resolves (see ``sources.py``); they stay
importable here for unit tests.
"""

from __future__ import annotations

__all__: list[str] = []
