"""`nbcontainers doctor`: every check of the setup, with the command that fixes each finding."""

from __future__ import annotations

import sys

import click

from .common import JSON, errors_as_messages, get_runtime

__all__ = ["doctor"]

MARKS = {"ok": "ok  ", "skip": "skip", "warn": "warn", "fail": "FAIL"}


@click.command()
@JSON
@errors_as_messages
def doctor(as_json: bool) -> None:
    """Check the engine, images, GPUs and kernelspecs, and say what to fix.

    Exits 0 when nothing failed (warnings alone leave a usable setup), 3 when no engine
    answers, else 1.
    """
    import json
    from dataclasses import asdict

    from ..doctor import exit_code, run_checks
    from ..doctor.security import security_facts
    from ..hub.store import shared_stores_here
    from ..runtimes import choose_engine

    name, endpoint, why = choose_engine()
    security = security_facts(shared_stores_here())
    checks = run_checks(
        get_runtime(), why=why, engine_name=name, endpoint=endpoint, security=security
    )
    if as_json:
        click.echo(json.dumps([asdict(c) for c in checks], indent=2))
    else:
        for c in checks:
            click.echo(f"[{MARKS[c.status]}] {c.name}: {c.detail}")
            if c.fix and c.status != "ok":
                click.echo(f"       fix: {c.fix}")
    sys.exit(exit_code(checks))
