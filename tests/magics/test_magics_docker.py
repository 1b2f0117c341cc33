"""`%container` magics in a real local ipykernel relaying to a real container kernel.

The test client plays the frontend: it talks only to the local kernel, and checks that what
the container does reaches it with the right parent, as JupyterLab would see it."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..drive import Frontend, notebook

pytestmark = pytest.mark.docker


@pytest.fixture
def frontend(python_image: str, tmp_path: Path) -> Iterator[Frontend]:
    with notebook(tmp_path) as fe:
        yield fe


@pytest.fixture
def active(frontend: Frontend) -> Frontend:
    out = frontend.text("%container use python")
    assert "Cells now run in container kernel 'python'" in out
    return frontend


WHERE = "import os; print(os.environ.get('NBCONTAINERS_IMAGE'), os.getcwd())"


def test_use_local_and_one_cell(frontend: Frontend, tmp_path: Path) -> None:
    assert frontend.text(WHERE).split() == ["None", str(tmp_path)]
    frontend.text("%container use python")
    assert frontend.text(WHERE).split() == ["python", str(tmp_path)]
    frontend.text("%container local")
    assert frontend.text(WHERE).split()[0] == "None"
    assert frontend.text("%%container\n" + WHERE).split()[0] == "python"
    assert frontend.text("%container list").split()[:2] == ["python", "idle"]
    assert "Stopped" in frontend.text("%container stop")


def test_outputs_are_relayed_with_the_right_parent(active: Frontend) -> None:
    content, outputs = active.run(
        "import matplotlib\nmatplotlib.use('module://matplotlib_inline.backend_inline')\n"
        "import matplotlib.pyplot as plt\n"
        "from IPython.display import HTML, display, update_display, clear_output\n"
        "import sys\nprint('to stdout'); print('to stderr', file=sys.stderr)\n"
        "display(HTML('<b>bold</b>'))\n"
        "display('first', display_id='d1'); update_display('second', display_id='d1')\n"
        "plt.plot([1, 2, 3]); plt.show()\n"
        "clear_output(wait=True)\n"
        "6 * 7"
    )
    assert content["status"] == "ok"
    kinds = [m["msg_type"] for m in outputs]
    streams = {
        m["content"]["name"]: m["content"]["text"] for m in outputs if m["msg_type"] == "stream"
    }
    assert streams == {"stdout": "to stdout\n", "stderr": "to stderr\n"}
    displays = [m["content"] for m in outputs if m["msg_type"] == "display_data"]
    assert any("text/html" in d["data"] for d in displays)
    assert any("image/png" in d["data"] for d in displays)
    assert any(d.get("transient", {}).get("display_id") == "d1" for d in displays)
    update = next(m["content"] for m in outputs if m["msg_type"] == "update_display_data")
    assert update["transient"]["display_id"] == "d1"
    assert "clear_output" in kinds
    result = next(m["content"] for m in outputs if m["msg_type"] == "execute_result")
    assert result["data"]["text/plain"] == "42"
    assert result["execution_count"] == content["execution_count"]  # the local prompt number
    assert "execute_input" not in kinds[1:]  # only the local one, not the container's


def test_output_from_a_background_thread_after_the_cell(active: Frontend) -> None:
    content, _ = active.run(
        "import threading\nthreading.Timer(0.5, lambda: print('late', flush=True)).start()"
    )
    deadline = time.monotonic() + 10
    late = None
    while late is None and time.monotonic() < deadline:
        try:
            msg = active.kc.get_iopub_msg(timeout=0.2)
        except Exception:
            continue
        if msg["msg_type"] == "stream" and msg["content"]["text"] == "late\n":
            late = msg
    assert late is not None
    assert late["parent_header"]["msg_id"] == active.last_msg_id  # the cell that started it
    assert content["status"] == "ok"


def test_error_is_one_remote_traceback_with_the_true_name(active: Frontend) -> None:
    content, outputs = active.run("def f():\n    return 1 / 0\nf()")
    assert content["status"] == "error" and content["ename"] == "ZeroDivisionError"
    errors = [m for m in outputs if m["msg_type"] == "error"]
    assert len(errors) == 1
    tb = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(errors[0]["content"]["traceback"]))
    assert "return 1 / 0" in tb and "ZeroDivisionError: division by zero" in tb
    assert "nbcontainers" not in tb  # the relay's own frames are not shown


def test_input_and_getpass_prompt_the_frontend(active: Frontend) -> None:
    content, outputs = active.run(
        "name = input('Who? ')\nimport getpass\npw = getpass.getpass('Secret: ')\n"
        "print(name, len(pw))",
        stdin=["ada", "hunter2"],
    )
    assert content["status"] == "ok"
    prompts = [
        (m["content"]["prompt"], m["content"]["password"])
        for m in outputs
        if m["msg_type"] == "input_request"
    ]
    assert prompts == [("Who? ", False), ("Secret: ", True)]
    printed = "".join(m["content"]["text"] for m in outputs if m["msg_type"] == "stream")
    assert "ada 7" in printed


def test_interrupt_reaches_the_container_cell(active: Frontend) -> None:
    result: dict[str, Any] = {}

    def run_sleep() -> None:
        result["reply"], result["outputs"] = active.run("import time; time.sleep(600)")

    worker = threading.Thread(target=run_sleep)
    worker.start()
    time.sleep(2.0)
    started = time.monotonic()
    active.km.interrupt_kernel()
    worker.join(timeout=20)
    assert not worker.is_alive()
    assert time.monotonic() - started < 5
    assert result["reply"]["ename"] == "KeyboardInterrupt"
    assert active.text("print('usable')").strip() == "usable"


def test_widgets_render_and_talk_back(active: Frontend) -> None:
    content, outputs = active.run(
        "import ipywidgets as w\nslider = w.IntSlider(value=1)\n"
        "slider.observe(lambda change: print('moved to', change['new']), names='value')\n"
        "slider"
    )
    assert content["status"] == "ok"
    opens = [m["content"] for m in outputs if m["msg_type"] == "comm_open"]
    model = next(o for o in opens if o["data"]["state"].get("_model_name") == "IntSliderModel")
    view = next(m["content"] for m in outputs if m["msg_type"] == "execute_result")
    assert view["data"]["application/vnd.jupyter.widget-view+json"]["model_id"] == model["comm_id"]
    # The user drags the slider: the frontend sends an update to the *local* kernel.
    msg = active.kc.session.msg(
        "comm_msg",
        {
            "comm_id": model["comm_id"],
            "data": {"method": "update", "state": {"value": 5}, "buffer_paths": []},
        },
    )
    active.kc.shell_channel.send(msg)
    deadline, printed = time.monotonic() + 15, None
    while printed is None and time.monotonic() < deadline:
        try:
            got = active.kc.get_iopub_msg(timeout=0.2)
        except Exception:
            continue
        if got["msg_type"] == "stream" and "moved to 5" in got["content"]["text"]:
            printed = got
    assert printed is not None, "the callback's output did not come back"
    assert printed["parent_header"]["msg_id"] == msg["header"]["msg_id"]  # lands under it
    assert active.text("print(slider.value)").strip() == "5"


def test_completion_and_inspection_answer_from_the_container(active: Frontend) -> None:
    active.text("only_in_container_abc = 42")
    msg_id = active.kc.complete("only_in_cont", 12)
    reply = active.kc.get_shell_msg(timeout=30)
    assert reply["parent_header"]["msg_id"] == msg_id
    assert "only_in_container_abc" in reply["content"]["matches"]
    active.kc.inspect("only_in_container_abc", 5)
    reply = active.kc.get_shell_msg(timeout=30)
    assert reply["content"]["found"] is True
    assert "42" in reply["content"]["data"]["text/plain"]
    # The magic itself still completes locally.
    active.kc.complete("%container u", 12)
    assert "use" in active.kc.get_shell_msg(timeout=30)["content"]["matches"]
    active.kc.complete("%container use pyt", 18)
    matches = active.kc.get_shell_msg(timeout=30)["content"]["matches"]
    assert "python" in matches and "pytorch-cpu" in matches


def test_push_and_pull(frontend: Frontend) -> None:
    frontend.text(
        "import numpy as np, pandas as pd\n"
        "arr = np.arange(1_000_000, dtype='float64')\n"
        "df = pd.DataFrame({'a': [1, 2], 'b': ['x', 'y']})\n"
        "obj = {'nested': [1, (2, 3)], 'text': 'hé'}"
    )
    frontend.text("%container use python")
    frontend.text("%container push arr df obj")
    out = frontend.text(
        "print(float(arr.sum()), df.b.tolist(), obj['nested'], arr.flags.writeable)"
    )
    assert out.split("\n")[0] == "499999500000.0 ['x', 'y'] [1, (2, 3)] True"
    frontend.text(
        "import numpy as np, pandas as pd\nmade_there = np.linspace(0, 1, 5) * 2\n"
        "arr2 = arr[:3] + 1\n"
        "df2 = df.assign(c=pd.Categorical(['u', 'v']), d=pd.to_datetime(['2024-01-01', None]))\n"
        "obj2 = dict(obj, raw=b'\\x00', n=np.int64(3))"
    )
    # Back as data (npy/JSON), never a pickle: see tests/security/test_pull_untrusted_docker.py
    frontend.text("%container pull made_there arr2 df2 obj2")
    frontend.text("%container local")
    assert frontend.text("print(made_there.tolist(), arr2.tolist())").strip() == (
        "[0.0, 0.5, 1.0, 1.5, 2.0] [1.0, 2.0, 3.0]"
    )
    out = frontend.text(
        "print(df2.b.tolist(), df2.c.cat.categories.tolist(), df2.d.isna().tolist(), "
        "obj2['nested'], obj2['raw'], repr(obj2['n']), arr2.flags.writeable)"
    )
    assert (
        out.strip() == "['x', 'y'] ['u', 'v'] [False, True] [1, (2, 3)] b'\\x00' np.int64(3) True"
    )


def test_push_pull_errors_change_nothing(frontend: Frontend) -> None:
    frontend.text("x = 1\nimport threading\nlock = threading.Lock()")
    frontend.text("%container use python")
    content, outputs = frontend.run("%container push x missing_name")
    assert content["ename"] == "UsageError"
    assert "'missing_name'" in "".join(str(m["content"]) for m in outputs)
    content, outputs = frontend.run("%container push x lock")
    assert content["ename"] == "UsageError"
    said = "".join(str(m["content"]) for m in outputs)
    assert "_thread.lock" in said and "can't be pickled" in said
    assert frontend.text("print('x' in globals())").strip() == "False"  # all or nothing
    frontend.text("%container local")
    frontend.text("class OnlyHere:\n    pass\nhere = OnlyHere()")
    content, outputs = frontend.run("%container push x here")
    assert content["ename"] == "UsageError"
    assert "could not unpickle" in "".join(str(m["content"]) for m in outputs)
    assert frontend.text("%%container\nprint('x' in globals())").strip() == "False"
    content, outputs = frontend.run("%container pull not_there")
    assert content["ename"] == "UsageError"
    assert "not_there" in "".join(str(m["content"]) for m in outputs)
    frontend.text("%%container\nimport threading\nthere = threading.Lock()")
    content, outputs = frontend.run("%container pull there")
    said = "".join(str(m["content"]) for m in outputs)
    assert content["ename"] == "UsageError"
    assert "_thread.lock is not data that `%container pull` moves safely" in said
    assert "--pickle" in said and "use it only for images and code you trust" in said


def test_usage_help_and_bad_arguments(frontend: Frontend) -> None:
    content, _ = frontend.run("%container?")
    pages = [p for p in content.get("payload", []) if p.get("source") == "page"]
    assert pages and "%container use NAME" in pages[0]["data"]["text/plain"]
    for bad, said in [
        ("%container frobnicate", "invalid choice"),
        ("%container", "needs a subcommand"),
        ("%container use", "the following arguments are required"),
        ("%container use pyton", "Did you mean 'python'?"),
    ]:
        content, outputs = frontend.run(bad)
        assert content["status"] == "error" and content["ename"] == "UsageError", bad
        assert said in "".join(str(m["content"]) for m in outputs), bad


def test_status_logs_restart(active: Frontend) -> None:
    status = active.text("%container status")
    assert "image       python: nbcontainers/python:" in status
    assert "digest      sha256:" in status and "memory" in status and "gpus        none" in status
    active.text("import sys; print('hello log', file=sys.__stderr__, flush=True)")
    assert "hello log" in active.text("%container logs --tail 5")
    active.text("kept = 1")
    assert "Restarted" in active.text("%container restart")
    assert active.text("print('kept' in globals())").strip() == "False"
    active.text("%container local")
    active.text("after_restart = [1, 2]")
    active.text("%container push after_restart")  # helpers are sent again to the new kernel
    assert active.text("%%container\nprint(after_restart)").strip() == "[1, 2]"


def test_load_is_idempotent_and_unload_restores_local(frontend: Frontend, runtime: Any) -> None:
    frontend.text("%load_ext nbcontainers")
    frontend.text("import nbcontainers; nbcontainers.load_ipython_extension(get_ipython())")
    count = frontend.text(
        "print(sum(getattr(t, '__name__', '') == 'route' "
        "for t in get_ipython().input_transformers_cleanup))"
    )
    assert count.strip() == "1"
    frontend.text("%container use python")
    cid = frontend.text("%container status").split("container   ")[1].split()[0]
    frontend.text("%unload_ext nbcontainers")
    assert frontend.text(WHERE).split()[0] == "None"
    assert not [
        s for s in runtime.list({"io.nbcontainers.kernel-id": None}) if s.id.startswith(cid)
    ]
    content, _ = frontend.run("%container list")
    assert content["status"] == "error"  # the magic is gone


def test_binary_buffers_are_relayed(active: Frontend) -> None:
    content, outputs = active.run(
        "from comm import create_comm\n"
        "c = create_comm(target_name='nbc-test', data={'n': 1}, buffers=[b'\\x00\\x01bin'])"
    )
    assert content["status"] == "ok"
    opened = next(m for m in outputs if m["msg_type"] == "comm_open")
    assert opened["content"]["target_name"] == "nbc-test"
    assert [bytes(b) for b in opened["buffers"]] == [b"\x00\x01bin"]


def test_gpu_image_without_gpu_is_a_usage_error(frontend: Frontend) -> None:
    from nbcontainers.hostgpus import detect_gpus

    if detect_gpus():
        pytest.skip("this host has a GPU")
    content, outputs = frontend.run("%container use pytorch-gpu --gpus all")
    assert content["ename"] == "UsageError"
    assert "nbc-pytorch-cpu" in "".join(str(m["content"]) for m in outputs)


def test_use_chooses_memory_and_cpus_per_notebook(frontend: Frontend, runtime: Any) -> None:
    """`--mem`/`--cpus` reach the engine as the container's limits; a new choice is a new
    kernel in a new container."""

    def container() -> dict[str, Any]:
        cid = frontend.text("%container status").split("container   ")[1].split()[0]
        [found] = [
            s for s in runtime.list({"io.nbcontainers.kernel-id": None}) if s.id.startswith(cid)
        ]
        return dict(runtime.api.inspect_container(found.id))

    assert "Cells now run" in frontend.text("%container use python --mem 300m --cpus 1")
    first = container()
    assert first["HostConfig"]["Memory"] == 300 << 20
    assert first["HostConfig"]["NanoCpus"] == 10**9
    assert frontend.text("print(6 * 7)").strip() == "42"
    assert "Cells now run" in frontend.text("%container use python --memory 400m")
    second = container()
    assert second["Id"] != first["Id"] and second["HostConfig"]["Memory"] == 400 << 20
    assert "Stopped" in frontend.text("%container stop")
