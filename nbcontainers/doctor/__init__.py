"""`nbcontainers doctor` and `nbcontainers images check`: say what is wrong and what fixes it."""

from __future__ import annotations

from .advice import HostFacts, engine_fix, host_facts, image_problem
from .checks import Check, exit_code, run_checks
from .image import CHECK_UID, ImageReport, check_image

__all__ = [
    "CHECK_UID",
    "Check",
    "HostFacts",
    "ImageReport",
    "check_image",
    "engine_fix",
    "exit_code",
    "host_facts",
    "image_problem",
    "run_checks",
]
