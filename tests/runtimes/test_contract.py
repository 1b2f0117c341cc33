"""The runtime contract: what a kernel relies on from an engine, written once and run against
every runtime. The in-memory runtime runs in the fast tier, Docker in the Docker tier; an
engine added later adds one ``pytest.param`` to ``ENGINES`` and must pass the same tests."""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from nbcontainers.errors import (
    BuildError,
    ContainerConflict,
    ImageMissing,
    NbcontainersError,
    RuntimeFailure,
    Unsupported,
)
from nbcontainers.labels import KERNEL_ID
from nbcontainers.runtimes.base import (
    GPU_MODES,
    LIMITS,
    BuildEvent,
    BuildRequest,
    ContainerRuntime,
    ContainerSpec,
    parse_placement,
)

ENGINES = [
    "fake",
    pytest.param("docker", marks=pytest.mark.docker),
    pytest.param("podman", marks=pytest.mark.docker),  # rootless, the test user's own
    pytest.param("swarm", marks=pytest.mark.docker),  # services on a DinD worker node
]


@dataclass
class Engine:
    """A runtime under test, an image it has, and what the test made there (removed after)."""

    runtime: ContainerRuntime
    image: str
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    made: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)

    def spec(self, *command: str, **kw: object) -> ContainerSpec:
        # The kernel-id label puts every contract container under conftest's leak check.
        labels = {KERNEL_ID: f"contract-{self.tag}", **kw.pop("labels", {})}  # type: ignore[dict-item]
        return ContainerSpec(image=self.image, command=command, labels=labels, **kw)  # type: ignore[arg-type]

    def run(self, *command: str, **kw: object) -> str:
        cid = self.runtime.run(self.spec(*command, **kw))
        self.made.append(cid)
        return cid


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    if request.param == "fake":
        from nbcontainers.runtimes.fake import FakeRuntime

        image = "contract/base:1"
        rt: ContainerRuntime = FakeRuntime(images=[image])
    elif request.param == "swarm":
        rt = request.getfixturevalue("swarm")
        image = "nbcontainers/base:bookworm"  # tests/swarmnet.py loads it onto the worker
    elif request.param == "podman":
        rt = request.getfixturevalue("podman_runtime")
        image = "nbcontainers/base:bookworm"  # conftest.PODMAN_IMAGE
    else:
        from nbcontainers.catalog.entries import load_catalog

        rt = request.getfixturevalue("runtime")
        image = load_catalog()[request.getfixturevalue("python_image")].ref
    made = Engine(rt, image)
    yield made
    for cid in reversed(made.made):  # newest first: a namespace's guests before its holder
        rt.remove(cid)
    for ref in made.images:
        rt.remove_image(ref)
    left = rt.list({KERNEL_ID: f"contract-{made.tag}"})
    assert left == [], f"left behind on {request.param}: {[s.name for s in left]}"


def test_facts_describe_the_engine(engine: Engine) -> None:
    facts = engine.runtime.ping()
    assert facts.name and facts.version and facts.endpoint
    assert facts.gpu_mode in GPU_MODES
    assert facts.limits <= set(LIMITS)
    assert isinstance(facts.rootless, bool)
    assert engine.runtime.builder()  # this machine's engines can all build


def test_run_state_labels_and_list(engine: Engine) -> None:
    cid = engine.run("sleep", "infinity", labels={"io.nbcontainers.test": "a"})
    state = engine.runtime.state(cid)
    assert state is not None and state.running and state.id == cid
    assert state.labels["io.nbcontainers.test"] == "a"
    assert engine.runtime.state(state.name) == state  # by name as well as by id
    assert [s.id for s in engine.runtime.list({"io.nbcontainers.test": "a"})] == [cid]
    assert cid in {s.id for s in engine.runtime.list({"io.nbcontainers.test": None})}
    assert engine.runtime.list({"io.nbcontainers.test": "b"}) == []


def test_a_taken_name_is_a_conflict(engine: Engine) -> None:
    name = f"nbc-contract-{engine.tag}"
    first = engine.run("sleep", "infinity", name=name)
    with pytest.raises(ContainerConflict):
        engine.run("sleep", "infinity", name=name)
    state = engine.runtime.state(name)
    assert state is not None and state.id == first and state.running


def test_a_missing_image_leaves_nothing(engine: Engine) -> None:
    with pytest.raises(ImageMissing):
        engine.runtime.run(
            ContainerSpec(
                image="nbcontainers/absent:0", command=("true",), labels={"t": engine.tag}
            )
        )
    assert engine.runtime.list({"t": engine.tag}) == []


def test_exit_code_and_logs(engine: Engine) -> None:
    cid = engine.run("sh", "-c", "echo hello from the container; exit 3")
    assert engine.runtime.wait(cid, timeout=30) == 3
    state = engine.runtime.state(cid)
    assert state is not None and not state.running and state.exit_code == 3
    assert not state.oom_killed
    assert "hello from the container" in engine.runtime.logs(cid)


def test_wait_times_out_on_a_running_container(engine: Engine) -> None:
    cid = engine.run("sleep", "infinity")
    assert engine.runtime.wait(cid, timeout=0.5) is None


def test_signal_ends_a_container_under_init(engine: Engine) -> None:
    cid = engine.run("sleep", "infinity")
    engine.runtime.signal(cid, signal.SIGTERM)
    assert engine.runtime.wait(cid, timeout=30) == 128 + signal.SIGTERM
    with pytest.raises(RuntimeFailure):
        engine.runtime.signal(cid, signal.SIGTERM)  # no longer running


def test_stop_and_remove_are_idempotent(engine: Engine) -> None:
    cid = engine.run("sleep", "infinity")
    engine.runtime.stop(cid, timeout=1)
    state = engine.runtime.state(cid)
    assert state is not None and not state.running and state.exit_code is not None
    engine.runtime.stop(cid, timeout=1)
    engine.runtime.remove(cid)
    engine.runtime.remove(cid)
    assert engine.runtime.state(cid) is None
    assert engine.runtime.wait(cid, timeout=1) is None
    assert engine.runtime.logs(cid) == ""


def test_exec_in_a_running_container(engine: Engine) -> None:
    cid = engine.run("sleep", "infinity", user="1234:1234")
    try:
        done = engine.runtime.exec(cid, ["echo", "hi"])
    except Unsupported as exc:
        # Only a cluster may refuse: a Swarm manager can't reach into a task on another node.
        assert engine.runtime.ping().remote and "node" in str(exc)
        return
    assert (done.exit_code, done.output) == (0, "hi\n")
    assert engine.runtime.exec(cid, ["id", "-u"]).output.strip() == "1234"
    assert engine.runtime.exec(cid, ["false"]).exit_code == 1
    engine.runtime.stop(cid, timeout=1)
    with pytest.raises(RuntimeFailure):
        engine.runtime.exec(cid, ["true"])


def test_limits_are_enforced_or_refused(engine: Engine) -> None:
    facts = engine.runtime.ping()
    if "memory" in facts.limits and facts.remote:
        # No stats from a task on another node: the container reads its own cgroup limit.
        cid = engine.run(
            "sh", "-c", "cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/memory/memory.limit_in_bytes",
            mem_limit="64m",
        )  # fmt: skip
        engine.runtime.wait(cid, timeout=30)
        assert str(64 << 20) in engine.runtime.logs(cid)
        assert engine.runtime.stats(cid).memory_limit == 64 << 20
    elif "memory" in facts.limits:
        cid = engine.run("sleep", "infinity", mem_limit="64m")
        stats = engine.runtime.stats(cid)
        assert stats.memory_limit == 64 << 20
        assert stats.memory_used is not None and stats.memory_used >= 0
    else:
        with pytest.raises(Unsupported, match="memory"):
            engine.run("sleep", "infinity", mem_limit="64m")
        # What it cannot limit it cannot count either: unknown, not another cgroup's figure.
        cid = engine.run("sleep", "infinity")
        assert engine.runtime.stats(cid).memory_used is None


def test_unenforceable_limits_are_refused() -> None:
    from nbcontainers.runtimes.fake import FakeRuntime

    # A rootless engine on cgroup v1 enforces no limits: it must refuse, not ignore them.
    rt = FakeRuntime(images=["i"], limits=(), rootless=True)
    with pytest.raises(Unsupported, match="memory"):
        rt.run(ContainerSpec(image="i", command=("sleep", "infinity"), mem_limit="1g"))
    assert rt.list({}) == []


# Holds on any node of any cluster; two values for one label hold on none.
ANYWHERE = (parse_placement("node.hostname!=nbc-no-such-node"),)
NOWHERE = (parse_placement("node.labels.nbc.zone==a"), parse_placement("node.labels.nbc.zone==b"))


def test_placement_is_honoured_or_refused(engine: Engine) -> None:
    """An engine that can place containers honours every rule (one no node meets is
    ``Unsupported``, with nothing left); one that can't refuses any rule, never ignores it."""
    mine = {KERNEL_ID: f"contract-{engine.tag}"}
    if not engine.runtime.ping().placement:
        with pytest.raises(Unsupported, match=r"can't honour placement \(node.hostname!="):
            engine.run("sleep", "infinity", placement=ANYWHERE)
        assert engine.runtime.list(mine) == []
        return
    cid = engine.run("sleep", "infinity", placement=ANYWHERE)
    state = engine.runtime.state(cid)
    assert state is not None and state.running
    with pytest.raises(Unsupported, match=r"nbc\.zone"):
        engine.run("sleep", "infinity", placement=NOWHERE)
    assert [s.id for s in engine.runtime.list(mine)] == [cid]


def test_advice_is_in_the_engines_own_words(engine: Engine) -> None:
    """What the provisioner tells a user to run comes from the runtime: the command of the
    engine that runs the kernel, naming the container or node it is about."""
    own = {
        "fake": "fake-engine",
        "docker": "`docker inspect",
        "podman": "`podman inspect",
        "swarm": "`docker service ps --no-trunc",
        "kubernetes": "`kubectl -n",
    }[(facts := engine.runtime.ping()).name]
    locate = engine.runtime.advice("locate", "nbc-python-k1")
    assert locate.startswith(own) and "nbc-python-k1" in locate
    node = engine.runtime.advice("node", "node-7")
    assert "node-7" in node if facts.remote else node  # one host: it is the node
    assert engine.runtime.advice("no-such-topic", "x") == ""


def test_joining_a_network_namespace(engine: Engine) -> None:
    holder = engine.run("sleep", "infinity", network_mode="bridge")
    if engine.runtime.ping().remote:
        # Namespaces don't span nodes: refused, never a kernel on a network it didn't ask for.
        with pytest.raises(Unsupported, match="network"):
            engine.run("sleep", "infinity", network_mode=f"container:{holder}")
        return
    guest = engine.run("sleep", "infinity", network_mode=f"container:{holder}")
    state = engine.runtime.state(guest)
    assert state is not None and state.running
    engine.runtime.stop(guest, timeout=1)
    engine.runtime.stop(holder, timeout=1)
    # Joining a stopped holder: Docker refuses; Podman starts the holder first. Either way a
    # kernel never runs without the namespace it asked for.
    try:
        engine.run("sleep", "infinity", network_mode=f"container:{holder}")
    except RuntimeFailure:
        return
    state = engine.runtime.state(holder)
    assert state is not None and state.running


def test_build_with_a_secret_labels_and_progress(engine: Engine, tmp_path: Path) -> None:
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(
        "ARG BASE\n"
        "FROM ${BASE}\n"
        "RUN --mount=type=secret,id=token test -s /run/secrets/token && echo ok > /tmp/built\n"
        'LABEL io.nbcontainers.test="contract"\n'
    )
    secret = tmp_path / "token"
    secret.write_text("s3cret-value-never-in-a-layer")
    tag = f"nbcontainers/contract:{engine.tag}"
    events: list[BuildEvent] = []
    engine.images.append(tag)
    info = engine.runtime.build(
        BuildRequest(
            context=context,
            tag=tag,
            build_args={"BASE": engine.image},
            labels={"io.nbcontainers.extra": "yes"},
            secrets={"token": secret},
        ),
        events.append,
    )
    assert tag in info.tags
    assert info.labels["io.nbcontainers.test"] == "contract"
    assert info.labels["io.nbcontainers.extra"] == "yes"
    steps = [e for e in events if e.kind == "step"]
    assert steps and all(e.total and e.step and e.step <= e.total for e in steps)
    assert engine.runtime.image_info(tag) == info
    engine.runtime.remove_image(tag)
    assert engine.runtime.image_info(tag) is None
    engine.runtime.remove_image(tag)  # already gone: not an error


def test_a_failed_build_says_so(engine: Engine, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("RUN true\n")  # no FROM
    tag = f"nbcontainers/contract-broken:{engine.tag}"
    engine.images.append(tag)
    with pytest.raises(BuildError):
        engine.runtime.build(BuildRequest(context=tmp_path, tag=tag))
    assert engine.runtime.image_info(tag) is None


def test_images_lists_by_label_and_repository(engine: Engine, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(
        f'FROM {engine.image}\nLABEL io.nbcontainers.list="{engine.tag}"\n'
    )
    tag = f"nbcontainers/contract-list:{engine.tag}"
    engine.images.append(tag)
    built = engine.runtime.build(BuildRequest(context=tmp_path, tag=tag, labels={"t": "x"}))
    mine = {"io.nbcontainers.list": engine.tag}
    found = engine.runtime.images(labels=mine)
    assert [(i.id, i.tags, i.labels["t"]) for i in found] == [(built.id, (tag,), "x")]
    assert found[0].size > 0 and found[0].created
    assert built.id in {i.id for i in engine.runtime.images(labels={"io.nbcontainers.list": None})}
    assert [i.id for i in engine.runtime.images(repository="nbcontainers/contract-list")] == [
        built.id
    ]
    assert engine.runtime.images(labels={"io.nbcontainers.list": "other"}) == []
    assert engine.runtime.images(labels=mine, repository="nbcontainers/contract") == []
    engine.runtime.remove_image(built.id)  # by id, as `images prune` removes
    assert engine.runtime.images(labels=mine) == [] and engine.runtime.image_info(tag) is None


def test_pull_of_an_image_no_registry_has(engine: Engine) -> None:
    ref = f"127.0.0.1:9/nbcontainers/absent:{engine.tag}"  # nothing listens on port 9
    with pytest.raises(NbcontainersError):
        engine.runtime.pull(ref)
    assert engine.runtime.image_info(ref) is None


def _step_processes(marker: str) -> list[str]:
    """Host processes running the build step ``marker`` (engines run steps on this host)."""
    import subprocess

    done = subprocess.run(["pgrep", "-af", marker], capture_output=True, text=True, check=False)
    return [ln for ln in done.stdout.splitlines() if "pgrep" not in ln]


def test_a_cancelled_build_leaves_no_image(engine: Engine, tmp_path: Path) -> None:
    """An interrupt while a step runs (a notebook cell's KeyboardInterrupt, raised in the
    progress callback here) ends the build: no tag, and the step's process is gone."""
    marker = f"sleep 600.{int(engine.tag[:6], 16) % 10000:04d}"
    (tmp_path / "Dockerfile").write_text(f"ARG BASE\nFROM ${{BASE}}\nRUN {marker}\n")
    tag = f"nbcontainers/contract-cancel:{engine.tag}"
    engine.images.append(tag)

    def interrupt_in_the_slow_step(event: BuildEvent) -> None:
        if event.kind == "step" and "sleep" in event.text:
            if engine.runtime.ping().name != "fake":
                time.sleep(1.0)  # let the engine start the step's process
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        engine.runtime.build(
            BuildRequest(context=tmp_path, tag=tag, build_args={"BASE": engine.image}),
            interrupt_in_the_slow_step,
        )
    assert engine.runtime.image_info(tag) is None
    deadline = time.monotonic() + 15
    while _step_processes(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _step_processes(marker) == []
