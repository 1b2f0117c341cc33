"""`nbcontainers images check`: start an image once, the way a kernel would run in it, and say
whether it keeps the bring-your-own-image contract (python3 with ipykernel, any uid, writable
HOME) before a kernel start fails on it."""

from __future__ import annotations

import contextlib
import json
import uuid
from dataclasses import dataclass, field

from ..errors import NbcontainersError, RuntimeFailure
from ..runtimes.base import ContainerRuntime, ContainerSpec

__all__ = ["CHECK_UID", "ImageReport", "check_image"]

# A uid and gid no image defines: kernels run as the host user's, which the image can't know.
CHECK_UID = "48213:48213"
HOME = "/home/nbc"  # where kernels get their private HOME (a tmpfs), as kernels/launch.py

# Runs in the image: each requirement on its own, so one missing piece does not hide another.
_PROBE = """
import json, os, sys
r = {"python": sys.version.split()[0], "uid": os.getuid()}
try:
    import ipykernel
    r["ipykernel"] = ipykernel.__version__
except Exception as e:
    r["ipykernel_error"] = f"{type(e).__name__}: {e}"
home = os.environ.get("HOME", "")
try:
    with open(os.path.join(home, ".nbc-check"), "w") as f:
        f.write("ok")
    r["home_writable"] = True
except OSError as e:
    r["home_writable"] = False
    r["home_error"] = str(e)
try:
    import ipykernel.kernelapp  # what `python3 -m ipykernel_launcher` imports first
    r["kernelapp"] = True
except Exception as e:
    r["kernelapp_error"] = f"{type(e).__name__}: {e}"
print("NBC-CHECK " + json.dumps(r))
"""


@dataclass(frozen=True)
class ImageReport:
    """What one start of the image showed; ``problems`` empty means a kernel can run in it."""

    ref: str
    facts: dict[str, object] = field(default_factory=dict)
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems


def check_image(runtime: ContainerRuntime, ref: str, timeout: float = 60.0) -> ImageReport:
    """Start ``ref`` once as an arbitrary uid with a tmpfs HOME, no network and no
    capabilities, run the probe, remove the container and report."""
    spec = ContainerSpec(
        image=ref,
        command=("python3", "-c", _PROBE),
        name=f"nbc-check-{uuid.uuid4().hex[:8]}",
        env={"HOME": HOME},
        tmpfs={HOME: "rw,exec,mode=1777,size=64m"},
        user=CHECK_UID,
        network_mode="none",
        working_dir=HOME,
    )
    try:
        cid = runtime.run(spec)
    except RuntimeFailure as exc:
        # Docker refuses to create the process when python3 is not on the image's PATH.
        if "python3" in str(exc) and ("not found" in str(exc) or "no such file" in str(exc)):
            return ImageReport(ref, problems=("no python3 on the image's PATH",))
        raise
    try:
        code = runtime.wait(cid, timeout)
        log = runtime.logs(cid, tail=200)
    finally:
        with contextlib.suppress(NbcontainersError):  # gone already is fine
            runtime.remove(cid)
    return _report(ref, code, log)


def _report(ref: str, code: int | None, log: str) -> ImageReport:
    line = next((x for x in log.splitlines() if x.startswith("NBC-CHECK ")), "")
    if not line:
        if code is None:
            return ImageReport(ref, problems=("python3 did not finish within the timeout",))
        tail = " | ".join(log.strip().splitlines()[-3:]) or "no output"
        if code == 127:  # the shell's, and tini's, "command not found"
            return ImageReport(ref, problems=(f"no python3 on the image's PATH ({tail})",))
        if code == 126 or "python3" in log:
            return ImageReport(ref, problems=(f"no working python3 (exit {code}: {tail})",))
        return ImageReport(ref, problems=(f"python3 failed (exit {code}: {tail})",))
    facts: dict[str, object] = json.loads(line.removeprefix("NBC-CHECK "))
    problems = []
    if "ipykernel" not in facts:
        problems.append(
            f"python3 has no ipykernel ({facts.get('ipykernel_error')}): add "
            "`RUN python3 -m pip install ipykernel` to the Dockerfile"
        )
    elif "kernelapp" not in facts:
        problems.append(
            f"ipykernel does not import as uid {CHECK_UID} ({facts.get('kernelapp_error')}): "
            "install it where any user can read it (not under /root)"
        )
    if not facts.get("home_writable"):
        problems.append(
            f"HOME={HOME} is not writable as uid {CHECK_UID} ({facts.get('home_error')}): "
            f"do not create {HOME} in the image (kernels mount a tmpfs there)"
        )
    return ImageReport(ref, facts, tuple(problems))
