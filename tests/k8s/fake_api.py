"""An in-memory Kubernetes API for the runtime's tests: the official client's own model
classes, real ``ApiException`` answers (403 with a Status body, 404, 409, 422), a watch that
the client's own ``Watch`` reads, and a tiny scheduler and kubelet.

What it models: a pod is scheduled when a node has the GPUs it asks for (else Pending with
the scheduler's Unschedulable condition), pulls its image when the image is in ``images``
(else ErrImagePull), waits in ContainerCreating until the Secrets it mounts exist, then runs
with a pod IP. Tests end containers with :meth:`FakeCluster.exit` (a crash, an OOM kill) and
lose nodes with :meth:`FakeCluster.node_lost`. Deleting a pod deletes what it owns, as the
garbage collector does; a graceful delete leaves the pod visible, exited, for ``linger``
seconds. Nothing runs: ``sh -c "echo ...; exit N"`` is played as the fake runtime plays it,
and exec answers ``kill``, ``echo``, ``id``, ``true`` and ``false``. The API calls themselves
are in ``fake_core.py``.
"""

from __future__ import annotations

import itertools
import shlex
import threading
from types import SimpleNamespace
from typing import Any

from kubernetes import client as k

from .fake_core import Core, Networking, copy_model, now, status


class FakeCluster:
    """One namespace's worth of API server, scheduler and kubelet, in memory."""

    def __init__(
        self, images: tuple[str, ...] = ("img:ok",), gpus: int = 0, namespace: str = "nbc"
    ) -> None:
        self.lock = threading.Condition()
        # The one namespace the account may use (its Role's), and its Pod Security labels:
        # a pod elsewhere is refused as RBAC refuses it, one that breaks the level as the
        # Pod Security admission controller does (tests/k8s/pss.py).
        self.namespace = namespace
        self.namespace_labels = {
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/enforce-version": "v1.31",
        }
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
        self.authorization = SimpleNamespace(create_self_subject_rules_review=self._rules)
        self.core = Core(self)
        self.networking = Networking(self)
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

    def _rules(self, body: Any) -> Any:
        """A SelfSubjectRulesReview: the Role's rules less what ``forbidden`` takes away."""
        from nbcontainers.runtimes.kubernetes.names import ROLE_RULES

        self.check("create", "selfsubjectrulesreviews")
        rules = [
            k.V1ResourceRule(api_groups=[r.api_group], resources=[r.resource], verbs=[verb])
            for r in ROLE_RULES
            for verb in r.verbs
            if (verb, r.resource) not in self.forbidden
        ]
        status = k.V1SubjectRulesReviewStatus(
            resource_rules=rules, non_resource_rules=[], incomplete=False
        )
        return k.V1SelfSubjectRulesReview(spec=body.spec, status=status)

    # -- the API server's and kubelet's side ------------------------------------------------

    def check(self, verb: str, resource: str, name: str = "", namespace: str | None = None) -> None:
        ns = self.namespace if namespace is None else namespace
        if (verb, resource) in self.forbidden or ns != self.namespace:
            raise status(
                403,
                "Forbidden",
                f'{resource} "{name}" is forbidden: User "system:serviceaccount:jhub:nbc-notebook-'
                f'alice" cannot {verb} resource "{resource}" in API group "" in the namespace '
                f'"{ns}"',
            )

    def _changed(self, pod: Any, kind: str = "MODIFIED") -> None:
        pod.metadata.resource_version = str(next(self._versions))
        self.history.append((kind, copy_model(pod, "V1Pod")))
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
                finished_at=now(),
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
            else k.V1ContainerState(running=k.V1ContainerStateRunning(started_at=now()))
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


def runtime_for(cluster: FakeCluster, **kw: Any) -> Any:
    """A KubernetesRuntime over ``cluster`` in its namespace, owned by a Z2JH-like pod."""
    from nbcontainers.runtimes.kubernetes.client import Apis
    from nbcontainers.runtimes.kubernetes.pods import PodSettings
    from nbcontainers.runtimes.kubernetes.runtime import KubernetesRuntime

    owner = {"component": "singleuser-server", "hub.jupyter.org/username": "alice"}
    settings = PodSettings(namespace=cluster.namespace, owner_selector=kw.pop("owner", owner))
    return KubernetesRuntime(
        apis=Apis(
            "https://fake.cluster:6443",
            cluster.core,
            cluster.networking,
            cluster.version,
            cluster.authorization,
        ),
        settings=kw.pop("settings", settings),
        start_timeout=kw.pop("start_timeout", 20),
        **kw,
    )
