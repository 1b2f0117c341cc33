"""Docker Swarm runtime: each container is one Swarm service (one replica, never restarted)
that Swarm places on a node; run on a manager. Images, builds and facts come from the Docker
runtime it extends; the Engine API shapes are read in ``wire.py``."""

from __future__ import annotations

import hashlib
import os
import signal as signal_module
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from ...errors import ContainerNotFound, EngineUnavailable, RuntimeFailure, Unsupported
from .. import engine_facts
from ..base import (
    ContainerSpec,
    ContainerState,
    ContainerStats,
    EngineFacts,
    ExecResult,
    Placement,
    placements,
    refuse_unenforceable,
)
from ..docker.runtime import DockerRuntime
from ..docker.wire import label_filter
from .wire import (
    GPU_KIND,
    SERVICE_LABEL,
    advice,
    create_arguments,
    gpu_nodes,
    secret_mounts,
    service_spec,
    start_failure,
    state_from_service,
    stop_arguments,
)

__all__ = ["SwarmRuntime"]

START_TIMEOUT = 120.0  # seconds a task may take to be placed and started (an image pull)
_STOP_SIGNALS = (signal_module.SIGTERM, signal_module.SIGKILL)


class SwarmRuntime(DockerRuntime):
    """A :class:`~nbcontainers.runtimes.base.ContainerRuntime` over Swarm services.

    A "container" here is a service: its id and name are the service's, its state that of its
    newest task, with the address of the task's node and the ports published there (host
    mode). ``placement`` adds constraints to every service (a test confines itself to its
    nodes); ``ContainerSpec.placement`` adds a container's own. ``exec`` is ``Unsupported``
    (a manager can't run a command in a task) and ``stats`` knows only the limit; only stop
    signals reach a task (SIGTERM, then SIGKILL after the grace period).
    """

    engine_label = "Docker Swarm manager"

    def __init__(
        self, base_url: str | None = None, placement: Sequence[str | Placement] = ()
    ) -> None:
        super().__init__(base_url)
        self.placement = placements(placement)

    # -- engine -----------------------------------------------------------------------------

    def ping(self) -> EngineFacts:
        facts = self._ask_facts()
        with self._translate("ask the engine about its swarm"):
            info = self.api.info()
            swarm = info.get("Swarm") or {}
            if swarm.get("LocalNodeState") != "active":
                raise EngineUnavailable(
                    f"The Docker engine at {self.endpoint} is not part of a swarm "
                    f"({swarm.get('LocalNodeState') or 'inactive'}). Make one with "
                    "`docker swarm init` (or join one), or point DOCKER_HOST at a manager."
                )
            if not swarm.get("ControlAvailable"):
                raise EngineUnavailable(
                    f"The Docker engine at {self.endpoint} is a swarm worker: services are made "
                    "on a manager. Point DOCKER_HOST at a manager (`docker node ls` there lists "
                    "them), or run the Jupyter server on one."
                )
            gpus = gpu_nodes(self.api.nodes(filters={"role": ["worker", "manager"]}))
        facts = EngineFacts(
            name="swarm",
            version=facts.version,
            api_version=facts.api_version,
            endpoint=self.endpoint,
            os=facts.os,
            rootless=facts.rootless,
            gpu_mode="generic-resources" if gpus else "none",
            limits=frozenset({"memory", "cpus", "pids", "shm"}),
            runtimes=facts.runtimes,
            gpu_setup=""
            if gpus
            else (
                f'on each GPU node, add "node-generic-resources": ["{GPU_KIND}=GPU-<uuid>"] '
                'and "default-runtime": "nvidia" to /etc/docker/daemon.json, uncomment '
                "swarm-resource in /etc/nvidia-container-runtime/config.toml, restart dockerd"
            ),
            remote=True,
            placement=True,
        )
        return facts

    def advice(self, topic: str, subject: str) -> str:
        return advice(topic, subject)

    # -- services ---------------------------------------------------------------------------

    def run(self, spec: ContainerSpec) -> str:
        facts = engine_facts(self)
        refuse_unenforceable(spec, facts.limits, self.engine_label, placement=True)
        if spec.network_mode not in (None, "bridge", "default"):
            raise Unsupported(
                f"A Swarm service can't use network {spec.network_mode!r} (no shared or host "
                "namespaces across nodes): use network 'bridge' (the default for Swarm kernels)."
            )
        gpus = self._gpu_count(spec, facts)
        name = spec.name or f"nbc-{uuid.uuid4().hex[:12]}"
        # Our rules are Swarm constraints as written: str() gives that form.
        placement = [str(rule) for rule in (*self.placement, *spec.placement)]
        secrets = self._make_secrets(spec, name)
        body = service_spec(spec, name, [s[:3] for s in secrets], gpus, placement)
        try:
            with self._translate(f"create a service from {spec.image}"):
                created = self.api.create_service(**create_arguments(body))
                service_id = str(created["ID"])
        except Exception:
            self._remove_secrets(name)
            raise
        try:
            self._wait_started(service_id, spec.image, placement, gpus)
        except Exception:
            self.remove(service_id)  # nothing is left behind on failure
            raise
        return service_id

    def _gpu_count(self, spec: ContainerSpec, facts: EngineFacts) -> int | None:
        if spec.gpus is None:
            return None
        if facts.gpu_mode == "none":
            raise Unsupported(
                f"This kernel asks for GPUs, but no node of the swarm at {self.endpoint} "
                f"advertises {GPU_KIND} generic resources (Swarm services take no device "
                f"requests). To fix it: {facts.gpu_setup}. Or remove the 'gpus' setting."
            )
        if spec.gpus.device_ids:
            raise Unsupported("Swarm places GPUs by count, not by device id: set gpus to a number.")
        if spec.gpus.count == -1:  # "all": as many as the best node has
            nodes = gpu_nodes(self.api.nodes())
            return max(nodes.values())
        return spec.gpus.count

    def _make_secrets(self, spec: ContainerSpec, name: str) -> list[tuple[str, str, str]]:
        """One Swarm secret per read-only file mount, labelled with the service's name."""
        _binds, files = secret_mounts(spec)
        made: list[tuple[str, str, str]] = []
        try:
            for index, mount in enumerate(files):
                with open(mount.source, "rb") as f:
                    data = f.read()
                digest = hashlib.sha256(data).hexdigest()[:8]
                secret_name = f"{name}-{index}-{digest}"
                labels = {**spec.labels, SERVICE_LABEL: name}
                with self._translate(f"store {os.path.basename(mount.source)} as a secret"):
                    created = self.api.create_secret(secret_name, data, labels=labels)
                made.append((str(created["ID"]), secret_name, mount.target))
        except Exception:
            self._remove_secrets(name)
            raise
        return made

    def _remove_secrets(self, name: str) -> None:
        with self._translate("remove a kernel's secrets"):
            for secret in self.api.secrets(filters={"label": f"{SERVICE_LABEL}={name}"}):
                for attempt in range(20):  # in use until the service is gone
                    try:
                        self.api.remove_secret(secret["ID"])
                        break
                    except Exception as exc:
                        if "not found" in str(exc).lower():
                            break
                        if attempt == 19:
                            raise
                        time.sleep(0.1)

    def _wait_started(
        self, service_id: str, image: str, placement: Sequence[str], gpus: int | None
    ) -> None:
        """Until the task runs (or ran): fail at once for a task that never will."""
        deadline = time.monotonic() + START_TIMEOUT
        task: Mapping[str, Any] | None = None
        while time.monotonic() < deadline:
            task = self._newest_task(service_id)
            if task is not None:
                failure = start_failure(task, image, placement, gpus)
                if failure is not None:
                    if task.get("NodeID"):  # name the node in the message
                        node = self._node_name(str(task["NodeID"]))
                        failure = start_failure(task, image, placement, gpus, node) or failure
                    raise failure
                if (task.get("Status") or {}).get("State") in (
                    "running", "complete", "failed", "shutdown",
                ):  # fmt: skip
                    return
            time.sleep(0.05)
        state = (task or {}).get("Status") or {}
        raise RuntimeFailure(
            f"The Swarm task for {image} did not start in {START_TIMEOUT:.0f} s (it is "
            f"{state.get('State', 'not created')}: {state.get('Err') or state.get('Message')}). "
            "`docker service ps --no-trunc SERVICE` on a manager says why."
        )

    def _newest_task(self, service_id: str) -> Mapping[str, Any] | None:
        with self._translate(f"list tasks of service {service_id[:12]}"):
            tasks: list[Mapping[str, Any]] = self.api.tasks(filters={"service": service_id})
        # A restart of a replica is a new task in the same slot: the newest is the one.
        return max(tasks, key=lambda t: str(t.get("CreatedAt", "")), default=None)

    def _inspect(self, what: str, ident: str) -> Mapping[str, Any] | None:
        """A service or node by id or name, None when there is none."""
        try:
            with self._translate(f"inspect {what} {ident[:12]}"):
                found: Mapping[str, Any] = getattr(self.api, f"inspect_{what}")(ident)
        except ContainerNotFound:  # the SDK's NotFound, translated
            return None
        return found

    def _node_name(self, node_id: str) -> str:
        node = self._inspect("node", node_id) or {}
        return str((node.get("Description") or {}).get("Hostname") or node_id[:12])

    def state(self, container_id: str) -> ContainerState | None:
        service = self._inspect("service", container_id)
        if service is None:
            return None
        task = self._newest_task(str(service["ID"]))
        node = None
        if task is not None and task.get("NodeID"):
            node = self._inspect("node", str(task["NodeID"]))
        return state_from_service(service, task, node)

    def wait(self, container_id: str, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        while True:
            state = self.state(container_id)
            if state is None:
                return None
            if not state.running:
                return state.exit_code
            if time.monotonic() > deadline:
                return None
            time.sleep(0.1)

    def _scale_to_zero(self, container_id: str) -> None:
        service = self._inspect("service", container_id)
        if service is None:
            return
        with self._translate(f"stop service {container_id[:12]}"):
            if service["Spec"].get("Mode", {}).get("Replicated", {}).get("Replicas") == 0:
                return
            self.api.update_service(**stop_arguments(service))

    def signal(self, container_id: str, signum: int) -> None:
        name = signal_module.Signals(signum).name
        state = self.state(container_id)
        if state is None or not state.running:
            raise RuntimeFailure(
                f"send {name} to service {container_id[:12]}: it is not running "
                f"({'gone' if state is None else state.status})."
            )
        if signum not in _STOP_SIGNALS:
            raise Unsupported(
                f"Swarm can't deliver {name} to a task; only a stop (SIGTERM, then SIGKILL after "
                "the grace period). Kernels are interrupted by message instead."
            )
        self._scale_to_zero(container_id)

    def stop(self, container_id: str, timeout: float) -> None:
        self._scale_to_zero(container_id)
        self.wait(container_id, timeout + 12)  # the service's grace period, then SIGKILL

    def remove(self, container_id: str) -> None:
        service = self._inspect("service", container_id)
        if service is None:
            return
        try:
            with self._translate(f"remove service {container_id[:12]}"):
                self.api.remove_service(service["ID"])
        except ContainerNotFound:  # removed meanwhile
            pass
        # Swarm removes the task's container on its node; the secrets are ours to remove.
        self._remove_secrets(str(service["Spec"]["Name"]))

    def logs(self, container_id: str, tail: int = 50) -> str:
        state = self.state(container_id)
        if state is None or state.status == "dead":  # a down node can't send its logs
            return ""
        try:
            with self._translate(f"read logs of service {container_id[:12]}"):
                raw = self.api.service_logs(
                    container_id, stdout=True, stderr=True, tail=tail, follow=False
                )
                data = b"".join(raw) if not isinstance(raw, bytes) else raw
        except ContainerNotFound:
            return ""
        return data.decode("utf-8", "replace")

    def list(self, labels: Mapping[str, str | None]) -> Sequence[ContainerState]:
        with self._translate("list services"):
            rows = self.api.services(filters=label_filter(labels))
        return self._states_of(str(row["ID"]) for row in rows)

    def exec(
        self, container_id: str, command: Sequence[str], user: str | None = None
    ) -> ExecResult:
        state = self.state(container_id)
        where = f" on node {state.node}" if state and state.node else ""
        raise Unsupported(
            f"A Swarm manager can't run a command in a task: use `docker exec` on the node"
            f"{where}, or run it in the kernel."
        )

    def stats(self, container_id: str) -> ContainerStats:
        """The memory limit only: a manager can't sample a task's use."""
        service = self._inspect("service", container_id)
        if service is None:
            raise ContainerNotFound(f"read stats of service {container_id[:12]}: no such service")
        limits = (service["Spec"]["TaskTemplate"].get("Resources") or {}).get("Limits") or {}
        limit = limits.get("MemoryBytes")
        return ContainerStats(None, None, int(limit) if limit else None)
