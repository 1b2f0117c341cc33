"""The API side of the in-memory cluster (fake_api.py): the CoreV1Api and NetworkingV1Api
calls the runtime makes, with the client's names and arguments, a urllib3-like watch
response of JSON lines, and an exec answer."""

from __future__ import annotations

import datetime
import json
import re
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from kubernetes import client as k
from kubernetes.client.exceptions import ApiException

if TYPE_CHECKING:
    from .fake_api import FakeCluster

_API = k.ApiClient()
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


def copy_model(obj: Any, kind: str) -> Any:
    """A deep copy through the wire format, as the API server would store and answer it."""
    return _API.deserialize(json.dumps(_API.sanitize_for_serialization(obj)), kind, None)


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def status(code: int, reason: str, message: str) -> ApiException:
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


class WatchResponse:
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


class ExecClient:
    def __init__(self, output: str, code: int) -> None:
        self.output, self.returncode = output, code

    def run_forever(self, timeout: float | None = None) -> None:
        pass

    def read_all(self) -> str:
        return self.output

    def close(self) -> None:
        pass


class Core:
    """The CoreV1Api calls KubernetesRuntime makes, with the same names and arguments."""

    def __init__(self, cluster: FakeCluster) -> None:
        self.c = cluster
        self.api_client = k.ApiClient()  # the exec stream swaps its call_api; we answer first

    def create_namespaced_pod(self, namespace: str, body: Any) -> Any:
        from .pss import admission

        c, name = self.c, body.metadata.name
        c.check("create", "pods", name, namespace)
        if body.metadata.namespace not in (None, namespace):
            raise status(
                400,
                "BadRequest",
                "the namespace of the provided object does not match the namespace sent on "
                "the request",
            )
        broken = admission(c.namespace_labels, _API.sanitize_for_serialization(body))
        if broken:
            level = c.namespace_labels.get("pod-security.kubernetes.io/enforce")
            version = c.namespace_labels.get("pod-security.kubernetes.io/enforce-version")
            raise status(
                403,
                "Forbidden",
                f'pods "{name}" is forbidden: violates PodSecurity "{level}:{version}": '
                + "; ".join(broken),
            )
        if not _DNS_LABEL.match(name):
            raise status(422, "Invalid", f'Pod "{name}" is invalid: metadata.name')
        for key, value in (body.metadata.labels or {}).items():
            if not (
                _LABEL_NAME.match(key.rpartition("/")[2])
                and _LABEL_VALUE.match(value)
                and len(value) <= 63
            ):
                raise status(422, "Invalid", f'Pod "{name}" is invalid: metadata.labels: {value!r}')
        with c.lock:
            if name in c.pods:
                raise status(409, "AlreadyExists", f'pods "{name}" already exists')
            pod = copy_model(body, "V1Pod")
            pod.metadata.uid = f"uid-{name}"
            pod.metadata.creation_timestamp = now()
            pod.status = k.V1PodStatus(phase="Pending")
            c.pods[name] = pod
            c._changed(pod, "ADDED")
            c._kubelet(pod)
            return pod

    def read_namespaced_pod(self, name: str, namespace: str) -> Any:
        self.c.check("get", "pods", name, namespace)
        with self.c.lock:
            if name not in self.c.pods:
                raise status(404, "NotFound", f'pods "{name}" not found')
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
        """List, or watch with ``watch=True``.

        :rtype: V1PodList
        """
        c = self.c
        c.check("watch" if watch else "list", "pods", "", namespace)
        wanted = field_selector.partition("=")[2] if field_selector else None
        if watch:
            return WatchResponse(c, wanted, timeout_seconds or 5)  # type: ignore[return-value]
        with c.lock:
            items = [
                p
                for n, p in c.pods.items()
                if wanted in (None, n) and _matches(p.metadata.labels or {}, label_selector)
            ]
        return k.V1PodList(items=items)

    def delete_namespaced_pod(self, name: str, namespace: str, body: Any = None) -> Any:
        c = self.c
        c.check("delete", "pods", name, namespace)
        grace = body.grace_period_seconds if body else 30
        with c.lock:
            pod = c.pods.get(name)
            if pod is None:
                raise status(404, "NotFound", f'pods "{name}" not found')
            c.deletes.append((name, grace))
            if pod.status.phase == "Running":  # the kubelet's SIGTERM, or SIGKILL at grace 0
                c._terminate(pod, 137 if grace == 0 else 143, "Error")
            if grace and not pod.metadata.deletion_timestamp:
                # The process is gone; the object lingers until the kubelet confirms.
                pod.metadata.deletion_timestamp = now()
                c._changed(pod)
                threading.Timer(c.linger, c.finalize, (name,)).start()
            else:
                c.finalize(name)
        return k.V1Status(status="Success")

    def read_namespaced_pod_log(
        self, name: str, namespace: str, container: str = "", tail_lines: int | None = None
    ) -> str:
        c = self.c
        c.check("get", "pods/log", name, namespace)
        with c.lock:
            if name not in c.pods:
                raise status(404, "NotFound", f'pods "{name}" not found')
            lines = c.logs.get(name, [])
        lines = lines[-tail_lines:] if tail_lines else lines
        return "".join(line + "\n" for line in lines)

    def list_namespaced_event(self, namespace: str, field_selector: str = "") -> Any:
        self.c.check("list", "events", "", namespace)
        wanted = field_selector.partition("=")[2]
        with self.c.lock:
            return k.CoreV1EventList(
                items=[e for e in self.c.events if e.involved_object.name == wanted]
            )

    def create_namespaced_secret(self, namespace: str, body: Any) -> Any:
        c = self.c
        c.check("create", "secrets", body.metadata.name, namespace)
        with c.lock:
            if body.metadata.name in c.secrets:
                raise status(409, "AlreadyExists", f'secrets "{body.metadata.name}" exists')
            c.secrets[body.metadata.name] = body
            for pod in list(c.pods.values()):  # the kubelet retries the mount
                c._kubelet(pod)
        return body

    def connect_get_namespaced_pod_exec(self, name: str, namespace: str, **kw: Any) -> Any:
        c = self.c
        c.check("create", "pods/exec", name, namespace)
        command = list(kw["command"])
        with c.lock:
            pod = c.pods.get(name)
            if pod is None:
                raise status(404, "NotFound", f'pods "{name}" not found')
            if pod.status.phase != "Running" or pod.metadata.deletion_timestamp:
                raise status(
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
        if command[:2] == ["sh", "-c"]:  # the shell's own kill
            command = command[2].split()
        output, code = answers.get(command[0], (f"{command[0]}: not found\n", 127))
        return ExecClient(output, code)


class Networking:
    def __init__(self, cluster: FakeCluster) -> None:
        self.c = cluster

    def create_namespaced_network_policy(self, namespace: str, body: Any) -> Any:
        c = self.c
        c.check("create", "networkpolicies", body.metadata.name, namespace)
        with c.lock:
            c.policies[body.metadata.name] = body
        return body
