"""An in-memory Kubernetes API for the runtime's tests: the official client's own model
classes, real ``ApiException`` answers (403 with a Status body, 404, 409, 422), a watch that
the client's own ``Watch`` reads, and a tiny scheduler and kubelet.

What it models: a pod is scheduled when a node has the GPUs it asks for (else Pending with
the scheduler's Unschedulable condition), pulls its image when the image is in ``images``
(else ErrImagePull), waits in ContainerCreating until the Secrets it mounts exist, then runs
with a pod IP. Tests end containers with :meth:`FakeCluster.exit` (a crash, an OOM kill) and
lose nodes with :meth:`FakeCluster.node_lost`. Deleting a pod deletes what it owns, as the
garbage collector does. Nothing runs: exec answers ``kill`` and ``echo`` only.
"""

from __future__ import annotations

import datetime
import itertools
import json
import re
import shlex
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

from kubernetes import client as k
from kubernetes.client.exceptions import ApiException

_API = k.ApiClient()
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


def _copy(obj: Any, kind: str) -> Any:
    """A deep copy through the wire format, as the API server would store and answer it."""
    return _API.deserialize(json.dumps(_API.sanitize_for_serialization(obj)), kind, None)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _status(code: int, reason: str, message: str) -> ApiException:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    return ApiException(status=code, reason=reason, body=json.dumps(body))


def _matches(labels: dict[str, str], selector: str | None) -> bool:
    for term in filter(None, (selector or "").split(",")):
        key, sep, value = term.partition("=")
        if (sep and labels.get(key) != value) or (not sep and key not in labels):
            return False
    return True


class _WatchResponse:
    """What ``_preload_content=False`` returns: a urllib3-like response of JSON lines."""

    status = 200

    def __init__(self, cluster: FakeCluster, name: str | None, timeout: float) -> None:
        self.cluster, self.name, self.deadline = cluster, name, time.monotonic() + timeout

    def stream(self, amt: Any = None, decode_content: bool = False) -> Iterator[bytes]:
        c = self.cluster
        with c.lock:
            seen = len(c.history)
            # A watch without a resourceVersion starts with the objects as they are now.
            initial = [p for n, p in c.pods.items() if self.name in (None, n)]
        for pod in initial:
            yield self._line("ADDED", pod)
        while True:
            with c.lock:
                while len(c.history) == seen:
                    left = self.deadline - time.monotonic()
                    if left <= 0:
                        return
                    c.lock.wait(left)
                new, seen = c.history[seen:], len(c.history)
            for kind, pod in new:
                if self.name in (None, pod.metadata.name):
                    yield self._line(kind, pod)

    def _line(self, kind: str, pod: Any) -> bytes:
        obj = _API.sanitize_for_serialization(pod)
        return (json.dumps({"type": kind, "object": obj}) + "\n").encode()

    def close(self) -> None:
        pass

    def release_conn(self) -> None:
        pass


class _ExecClient:
    def __init__(self, output: str, code: int) -> None:
        self.output, self.returncode = output, code

    def run_forever(self, timeout: float | None = None) -> None:
        pass

    def read_all(self) -> str:
        return self.output


class FakeCluster:
    """One namespace's worth of API server, scheduler and kubelet, in memory."""

    def __init__(self, images: tuple[str, ...] = ("img:ok",), gpus: int = 0) -> None:
        self.lock = threading.Condition()
        self.pods: dict[str, Any] = {}
        self.secrets: dict[str, Any] = {}
        self.policies: dict[str, Any] = {}
        self.events: list[Any] = []
        self.logs: dict[str, list[str]] = {}
        self.history: list[tuple[str, Any]] = []
        self.images = set(images)
        self.gpus = gpus  # free nvidia.com/gpu on the one node
        self.forbidden: set[tuple[str, str]] = set()  # (verb, resource) answered with 403
        self.execs: list[tuple[str, list[str]]] = []
        self.deletes: list[tuple[str, int | None]] = []
        self.linger = 1.0  # seconds a gracefully deleted pod stays visible
        self._ips = itertools.count(2)
        self._versions = itertools.count(1)
        self.core = _Core(self)
        self.networking = _Networking(self)
        self.version = SimpleNamespace(
            get_code=lambda: k.VersionInfo(
                git_version="v1.31.4-fake",
                major="1",
                minor="31",
                build_date="",
                compiler="",
                git_commit="",
                git_tree_state="",
                go_version="",
                platform="linux/amd64",
            )
        )

    # -- what tests do ----------------------------------------------------------------------

    def exit(self, name: str, code: int, reason: str = "Error", log: str = "") -> None:
        """The kernel process ends: a crash, or ``reason="OOMKilled"``."""
        with self.lock:
            pod = self.pods[name]
            if log:
                self.logs.setdefault(name, []).extend(log.splitlines())
            self._terminate(pod, code, reason)

    def node_lost(self, name: str) -> None:
        with self.lock:
            pod = self.pods[name]
            pod.status.phase, pod.status.reason = "Unknown", "NodeLost"
            pod.status.message = "Node worker-1 which was running pod is unresponsive"
            self._changed(pod)

    def scale_up_pending(self, name: str) -> None:
        """A cluster autoscaler says a node for the pod is on its way."""
        self._event(name, "TriggeredScaleUp", "pod triggered scale-up: [{gpu-pool 0->1}]")

    # -- the API server's and kubelet's side ------------------------------------------------

    def check(self, verb: str, resource: str, name: str = "") -> None:
        if (verb, resource) in self.forbidden:
            raise _status(
                403,
                "Forbidden",
                f'{resource} "{name}" is forbidden: User "system:serviceaccount:nbc:nbc-notebook" '
                f'cannot {verb} resource "{resource}" in API group "" in the namespace "nbc"',
            )

    def _changed(self, pod: Any, kind: str = "MODIFIED") -> None:
        pod.metadata.resource_version = str(next(self._versions))
        self.history.append((kind, _copy(pod, "V1Pod")))
        self.lock.notify_all()

    def _event(self, name: str, reason: str, message: str) -> None:
        with self.lock:
            self.events.append(
                k.CoreV1Event(
                    metadata=k.V1ObjectMeta(name=f"{name}.{len(self.events)}"),
                    reason=reason,
                    message=message,
                    involved_object=k.V1ObjectReference(kind="Pod", name=name),
                )
            )

    def _terminate(self, pod: Any, code: int, reason: str) -> None:
        started = pod.status.container_statuses[0].state.running
        pod.status.phase = "Succeeded" if code == 0 else "Failed"
        pod.status.container_statuses[0].state = k.V1ContainerState(
            terminated=k.V1ContainerStateTerminated(
                exit_code=code,
                reason=reason,
                started_at=started.started_at if started else None,
                finished_at=_now(),
            )
        )
        self._changed(pod)

    def _kubelet(self, pod: Any) -> None:
        """Move a pending pod on as far as it can go now."""
        if pod.status.phase != "Pending":
            return
        spec, name = pod.spec, pod.metadata.name
        wanted = int(((spec.containers[0].resources.limits or {}).get("nvidia.com/gpu")) or 0)
        if wanted > self.gpus:
            message = "0/1 nodes are available: 1 Insufficient nvidia.com/gpu. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."  # noqa: E501
            pod.status.conditions = [
                k.V1PodCondition(
                    type="PodScheduled", status="False", reason="Unschedulable", message=message
                )
            ]
            self._event(name, "FailedScheduling", message)
            return self._changed(pod)
        pod.status.conditions = [k.V1PodCondition(type="PodScheduled", status="True")]
        pod.spec.node_name = "worker-1"
        image = spec.containers[0].image
        waiting = None
        if image not in self.images:
            waiting = k.V1ContainerStateWaiting(
                reason="ErrImagePull",
                message=f'failed to pull and unpack image "{image}": not found',
            )
        elif any(v.secret and v.secret.secret_name not in self.secrets for v in spec.volumes or ()):
            waiting = k.V1ContainerStateWaiting(reason="ContainerCreating")
        state = (
            k.V1ContainerState(waiting=waiting)
            if waiting
            else k.V1ContainerState(running=k.V1ContainerStateRunning(started_at=_now()))
        )
        pod.status.container_statuses = [
            k.V1ContainerStatus(
                name="kernel",
                image=image,
                image_id="",
                ready=waiting is None,
                restart_count=0,
                state=state,
            )
        ]
        if waiting is None:
            pod.status.phase, pod.status.pod_ip = "Running", f"10.1.0.{next(self._ips)}"
        self._changed(pod)
        if waiting is None:
            self._play(pod)

    def _play(self, pod: Any) -> None:
        """Play ``sh -c "echo ...; exit N"``; a ``sleep`` (or any other command) runs on."""
        args = pod.spec.containers[0].args or []
        if args[:2] != ["sh", "-c"] or len(args) != 3:
            return
        for words in (shlex.split(part) for part in args[2].split(";")):
            if words and words[0] == "echo":
                self.logs.setdefault(pod.metadata.name, []).append(" ".join(words[1:]))
            elif words and words[0] == "exit":
                return self._terminate(pod, int(words[1]) if len(words) > 1 else 0, "Error")
            elif words and words[0] == "sleep":
                return
        self._terminate(pod, 0, "Completed")

    def finalize(self, name: str) -> None:
        """The pod object goes, and the garbage collector takes what it owned."""
        with self.lock:
            pod = self.pods.pop(name, None)
            if pod is None:
                return
            for owned in self.owned_by(pod.metadata.uid):
                self.secrets.pop(owned, None)
                self.policies.pop(owned, None)
            self._changed(pod, "DELETED")

    def owned_by(self, uid: str) -> list[str]:
        return [
            n
            for store in (self.secrets, self.policies)
            for n, o in store.items()
            if any(r.uid == uid for r in o.metadata.owner_references or ())
        ]


class _Core:
    """The CoreV1Api calls KubernetesRuntime makes, with the same names and arguments."""

    def __init__(self, cluster: FakeCluster) -> None:
        self.c = cluster
        self.api_client = k.ApiClient()  # the exec stream swaps its call_api; we answer first

    def create_namespaced_pod(self, namespace: str, body: Any) -> Any:
        c, name = self.c, body.metadata.name
        c.check("create", "pods", name)
        if not _DNS_LABEL.match(name):
            raise _status(422, "Invalid", f'Pod "{name}" is invalid: metadata.name')
        for key, value in (body.metadata.labels or {}).items():
            if not (
                _LABEL_NAME.match(key.rpartition("/")[2])
                and _LABEL_VALUE.match(value)
                and len(value) <= 63
            ):
                raise _status(
                    422, "Invalid", f'Pod "{name}" is invalid: metadata.labels: {value!r}'
                )
        with c.lock:
            if name in c.pods:
                raise _status(409, "AlreadyExists", f'pods "{name}" already exists')
            pod = _copy(body, "V1Pod")
            pod.metadata.uid = f"uid-{name}"
            pod.metadata.creation_timestamp = _now()
            pod.status = k.V1PodStatus(phase="Pending")
            c.pods[name] = pod
            c._changed(pod, "ADDED")
            c._kubelet(pod)
            return pod

    def read_namespaced_pod(self, name: str, namespace: str) -> Any:
        self.c.check("get", "pods", name)
        with self.c.lock:
            if name not in self.c.pods:
                raise _status(404, "NotFound", f'pods "{name}" not found')
            return self.c.pods[name]

    def list_namespaced_pod(
        self,
        namespace: str,
        label_selector: str | None = None,
        field_selector: str | None = None,
        watch: bool = False,
        timeout_seconds: int | None = None,
        _preload_content: bool = True,
        **_: Any,
    ) -> V1PodList:  # noqa: F821 - a name the client's Watch reads as its model's
        c = self.c
        c.check("watch" if watch else "list", "pods")
        wanted = field_selector.partition("=")[2] if field_selector else None
        if watch:
            return _WatchResponse(c, wanted, timeout_seconds or 5)  # type: ignore[return-value]
        with c.lock:
            items = [
                p
                for n, p in c.pods.items()
                if wanted in (None, n) and _matches(p.metadata.labels or {}, label_selector)
            ]
        return k.V1PodList(items=items)

    def delete_namespaced_pod(self, name: str, namespace: str, body: Any = None) -> Any:
        c = self.c
        c.check("delete", "pods", name)
        grace = body.grace_period_seconds if body else 30
        with c.lock:
            pod = c.pods.get(name)
            if pod is None:
                raise _status(404, "NotFound", f'pods "{name}" not found')
            c.deletes.append((name, grace))
            if pod.status.phase == "Running":  # the kubelet's SIGTERM, or SIGKILL at grace 0
                c._terminate(pod, 137 if grace == 0 else 143, "Error")
            if grace and not pod.metadata.deletion_timestamp:
                # The process is gone; the object lingers until the kubelet confirms.
                pod.metadata.deletion_timestamp = _now()
                c._changed(pod)
                threading.Timer(c.linger, c.finalize, (name,)).start()
            else:
                c.finalize(name)
        return k.V1Status(status="Success")

    def read_namespaced_pod_log(
        self, name: str, namespace: str, container: str = "", tail_lines: int | None = None
    ) -> str:
        c = self.c
        c.check("get", "pods/log", name)
        with c.lock:
            if name not in c.pods:
                raise _status(404, "NotFound", f'pods "{name}" not found')
            lines = c.logs.get(name, [])
        lines = lines[-tail_lines:] if tail_lines else lines
        return "".join(line + "\n" for line in lines)

    def list_namespaced_event(self, namespace: str, field_selector: str = "") -> Any:
        self.c.check("list", "events")
        wanted = field_selector.partition("=")[2]
        with self.c.lock:
            return k.CoreV1EventList(
                items=[e for e in self.c.events if e.involved_object.name == wanted]
            )

    def create_namespaced_secret(self, namespace: str, body: Any) -> Any:
        c = self.c
        c.check("create", "secrets", body.metadata.name)
        with c.lock:
            if body.metadata.name in c.secrets:
                raise _status(409, "AlreadyExists", f'secrets "{body.metadata.name}" exists')
            c.secrets[body.metadata.name] = body
            for pod in list(c.pods.values()):  # the kubelet retries the mount
                c._kubelet(pod)
        return body

    def connect_get_namespaced_pod_exec(self, name: str, namespace: str, **kw: Any) -> Any:
        c = self.c
        c.check("create", "pods/exec", name)
        command = list(kw["command"])
        with c.lock:
            pod = c.pods.get(name)
            if pod is None:
                raise _status(404, "NotFound", f'pods "{name}" not found')
            if pod.status.phase != "Running" or pod.metadata.deletion_timestamp:
                raise _status(
                    400,
                    "BadRequest",
                    "cannot exec into a container in a completed "
                    f"pod; current phase is {pod.status.phase}",
                )
            c.execs.append((name, command))
            uid = pod.spec.security_context.run_as_user
        # Process 1 ignores signals it has no handler for; a kernel handles only SIGINT.
        answers = {
            "kill": ("", 0),
            "true": ("", 0),
            "false": ("", 1),
            "echo": (" ".join(command[1:]) + "\n", 0),
            "id": (f"{uid}\n", 0),
        }
        output, code = answers.get(command[0], (f"{command[0]}: not found\n", 127))
        return _ExecClient(output, code)


class _Networking:
    def __init__(self, cluster: FakeCluster) -> None:
        self.c = cluster

    def create_namespaced_network_policy(self, namespace: str, body: Any) -> Any:
        c = self.c
        c.check("create", "networkpolicies", body.metadata.name)
        with c.lock:
            c.policies[body.metadata.name] = body
        return body


def runtime_for(cluster: FakeCluster, **kw: Any) -> Any:
    """A KubernetesRuntime over ``cluster`` in namespace nbc, owned by a Z2JH-like pod."""
    from nbcontainers.runtimes.k8s_pods import PodSettings
    from nbcontainers.runtimes.kubernetes import KubernetesRuntime

    owner = {"component": "singleuser-server", "hub.jupyter.org/username": "alice"}
    settings = PodSettings(namespace="nbc", owner_selector=kw.pop("owner", owner))
    return KubernetesRuntime(
        core=cluster.core,
        networking=cluster.networking,
        version=cluster.version,
        settings=kw.pop("settings", settings),
        start_timeout=kw.pop("start_timeout", 20),
        **kw,
    )
