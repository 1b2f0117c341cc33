"""`nbcontainers doctor` and `nbcontainers images check`: say what is wrong and what fixes it."""

from __future__ import annotations

from .advice import HostFacts, engine_fix, host_facts, image_problem
from .checks import Check, exit_code, run_checks
from .image import CHECK_UID, ImageReport, check_image
from .security import SecurityFacts, security_checks, security_facts

__all__ = [
    "CHECK_UID",
    "Check",
    "HostFacts",
    "ImageReport",
    "SecurityFacts",
    "check_image",
    "engine_fix",
    "exit_code",
    "host_facts",
    "image_problem",
    "run_checks",
    "security_checks",
    "security_facts",
]
