"""Run as the Podman test user by test_home_podman.py: start an nbc-python kernel the way that
user's Jupyter server would (their rootless Podman), ask it who it is and where ``~`` is, write
``~/kept.txt``, ``%pip install`` the wheel in the working folder, import it, restart, import
it again; print what was seen as JSON. Not collected by pytest (no test_ prefix)."""

from __future__ import annotations

import json
import sys
from typing import Any

from jupyter_client.manager import KernelManager

WHO = (
    "import getpass, json, os, subprocess\n"
    "print(json.dumps([getpass.getuser(), os.environ.get('USER'), os.environ.get('LOGNAME'),"
    " subprocess.run(['whoami'], capture_output=True, text=True).stdout.strip(),"
    " os.path.expanduser('~'), os.getuid()]))\n"
    "open(os.path.expanduser('~/kept.txt'), 'w').write('kept')\n"
)
AFTER = (
    "import nbctiny, os; print(nbctiny.VALUE, open(os.path.expanduser('~/kept.txt')).read())\n"
    "!nbctiny"
)


def run(kc: Any, code: str, timeout: float = 120) -> str:
    out: list[str] = []

    def hook(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            out.append(f"{msg['content']['ename']}: {msg['content']['evalue']}")

    kc.execute_interactive(code, output_hook=hook, timeout=timeout)
    return "".join(out)


def main(work: str, wheel: str) -> None:
    seen: dict[str, Any] = {}
    km = KernelManager(kernel_name="nbc-python")
    km.start_kernel(cwd=work)
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=120)
        seen["who"] = json.loads(run(kc, WHO).strip().splitlines()[-1])
        seen["pip"] = run(kc, f"%pip install --no-index ./{wheel}", 300)[-400:]
        seen["at_once"] = run(kc, "import nbctiny; print(nbctiny.VALUE, nbctiny.__file__)")
        km.restart_kernel(now=True)
        kc.wait_for_ready(timeout=120)
        seen["after_restart"] = run(kc, AFTER)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    print(json.dumps(seen))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
