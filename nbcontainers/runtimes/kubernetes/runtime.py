"""Kubernetes runtime: each kernel is one locked-down pod in one namespace, through the
official ``kubernetes`` client (the only module that calls it; it translates its errors).

Where it runs: inside the notebook server's pod, with the service account and Role that
``nbcontainers k8s manifests`` writes (or with a kubeconfig, for an admin's checks); kernels
go to the kernel namespace of the server's user or team, where that account has its only
rights. Settings come from the environment (the hub's hook sets the first three), read when
the runtime is made: ``NBC_K8S_NAMESPACE`` (the kernel namespace; default: the pod's own
namespace), ``NBC_K8S_OWNER_NAMESPACE`` (the notebook pod's; default: the pod's own),
``NBC_K8S_OWNER_SELECTOR``, ``NBC_K8S_NETWORK_POLICY`` (``pod``: a NetworkPolicy per kernel,
the default; ``namespace``: the kernel namespace's own) and ``NBC_K8S_NODE_SELECTOR``
(``key=value,...``), ``NBC_K8S_IMAGE_PULL_SECRET`` (names, comma-separated),
``NBC_K8S_POD_TEMPLATE`` (a Pod manifest kernel pods start from),
``NBC_K8S_START_TIMEOUT`` (seconds, default 600). Images are built elsewhere and pulled by
the cluster: ``build``, ``pull``, ``push`` and ``remove_image`` raise ``Unsupported``.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal as signal_module
import socket
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from ...errors import ContainerNotFound, NbcontainersError, RuntimeFailure, Unsupported
from ..base import (
    ContainerSpec,
    ContainerState,
    ContainerStats,
    EngineFacts,
    ExecResult,
    refuse_unenforceable,
)
from .client import (
    LIMITS,
    SA_DIR,
    Apis,
    ClusterImages,
    check_role,
    cluster_facts,
    connect,
    settings_from_env,
    translate,
)
from .names import CONTAINER
from .placement import confine
from .pods import (
    PodSettings,
    files_secret,
    kernel_policy,
    label_selector,
    owner_selector,
    pod_for,
    pod_name,
    signal_command,
)
from .status import start_problem, state_from

__all__ = ["KubernetesRuntime"]

EXEC_TIMEOUT = 120.0
TERM_GRACE = 30  # seconds between SIGTERM and SIGKILL, the kubelet's default


class KubernetesRuntime(ClusterImages):
    """A :class:`~nbcontainers.runtimes.base.ContainerRuntime` over one namespace of a cluster.

    ``context`` names a kubeconfig context (outside a cluster). Tests pass ``apis`` and
    ``settings`` instead of a cluster.
    """

    engine_label = "Kubernetes cluster"

    def __init__(
        self,
        context: str | None = None,
        *,
        apis: Apis | None = None,
        settings: PodSettings | None = None,
        start_timeout: float | None = None,
        own_pod: str | None = None,
    ) -> None:
        env_settings, env_timeout = settings_from_env()
        self.settings = settings or env_settings
        self.start_timeout = env_timeout if start_timeout is None else start_timeout
        self._context = context
        self._apis = apis
        # The notebook server's own pod (by its hostname) when it runs in the cluster.
        in_cluster = (SA_DIR / "token").is_file() or own_pod is not None
        self._own_pod = own_pod or (socket.gethostname() if in_cluster else None)

    # -- plumbing ---------------------------------------------------------------------------

    @property
    def apis(self) -> Apis:
        if self._apis is None:
            self._apis = connect(self._context)
        return self._apis

    @contextmanager
    def _translate(self, verb: str, resource: str, name: str = "") -> Iterator[None]:
        endpoint = self._apis.endpoint if self._apis else "(not connected)"
        with translate(endpoint, self.settings.namespace, verb, resource, name):
            yield

    def _pod(self, container_id: str) -> Any | None:
        from kubernetes.client.exceptions import ApiException

        name = pod_name(container_id)
        with self._translate("get", "pods", name):
            try:
                return self.apis.core.read_namespaced_pod(name, self.settings.namespace)
            except ApiException as exc:
                if exc.status == 404:
                    return None
                raise

    def _delete(self, container_id: str, grace: int) -> None:
        from kubernetes import client as k
        from kubernetes.client.exceptions import ApiException

        name = pod_name(container_id)
        with self._translate("delete", "pods", name):
            try:
                self.apis.core.delete_namespaced_pod(
                    name,
                    self.settings.namespace,
                    body=k.V1DeleteOptions(
                        grace_period_seconds=grace, propagation_policy="Background"
                    ),
                )
            except ApiException as exc:
                if exc.status != 404:  # already gone: stop and remove are idempotent
                    raise

    def _watch(self, name: str, seconds: float) -> Iterator[Any]:
        """The pod's states for up to ``seconds``, starting with the current one."""
        from kubernetes import watch

        with self._translate("watch", "pods", name):
            watcher: Any = watch.Watch()  # type: ignore[no-untyped-call]
            stream = watcher.stream(
                self.apis.core.list_namespaced_pod,
                self.settings.namespace,
                field_selector=f"metadata.name={name}",
                timeout_seconds=max(1, math.ceil(seconds)),
                # A connection that dies silently must not hang the watch past its end.
                _request_timeout=max(1, math.ceil(seconds)) + 10,
            )
            for event in stream:
                if event["type"] == "DELETED":
                    return
                yield event["object"]

    # -- engine and images ------------------------------------------------------------------

    def ping(self) -> EngineFacts:
        apis = self.apis
        with self._translate("get", "version"):
            info = apis.version.get_code()
        check_role(
            apis.authorization, apis.endpoint, self.settings.namespace, self.settings.pod_policies
        )
        return cluster_facts(str(info.git_version), apis.endpoint, self.settings.namespace)

    def advice(self, topic: str, subject: str) -> str:
        if topic == "locate":  # a container id here is its pod's name
            return f"`kubectl -n {self.settings.namespace} get pod {subject} -o wide`"
        if topic == "node":
            return f"`kubectl get node {subject} -o wide` (its INTERNAL-IP)"
        return ""

    # -- containers -------------------------------------------------------------------------

    def _owner_selector(self) -> dict[str, str]:
        if self.settings.owner_selector:
            return dict(self.settings.owner_selector)
        # The account has no right where the server runs when kernels run elsewhere.
        elsewhere = self.settings.owner_namespace not in ("", self.settings.namespace)
        own = self._pod(self._own_pod) if self._own_pod and not elsewhere else None
        return owner_selector(dict((own and own.metadata.labels) or {}))

    def run(self, spec: ContainerSpec) -> str:
        refuse_unenforceable(spec, LIMITS, self.engine_label, placement=True)
        name = pod_name(spec.name) if spec.name else f"nbc-{os.urandom(4).hex()}"
        pod, contents = pod_for(spec, name, self.settings)
        confine(pod, spec.placement)  # after the admin's template: it only narrows theirs
        owner = self._owner_selector() if self.settings.pod_policies else {}
        ns = self.settings.namespace
        with self._translate("create", "pods", name):
            created = self.apis.core.create_namespaced_pod(ns, pod)
        try:
            # Owned by the pod, so the cluster deletes them with it. Until its policy exists
            # the namespace's default-deny policy (from the manifests) keeps the ports shut.
            if contents:
                with self._translate("create", "secrets", f"{name}-files"):
                    self.apis.core.create_namespaced_secret(ns, files_secret(created, contents))
            # In a kernel namespace the admin's policy admits the tenant's notebook pods.
            if self.settings.pod_policies:
                with self._translate("create", "networkpolicies", name):
                    policy = kernel_policy(
                        created, list(spec.ports), owner, self.settings.owner_namespace
                    )
                    self.apis.networking.create_namespaced_network_policy(ns, policy)
            self._wait_started(name)
        except BaseException:
            # Nothing is left behind on failure; a failed clean-up must not hide the reason.
            with contextlib.suppress(NbcontainersError):
                self._delete(name, 0)
            raise
        return name

    def _events(self, name: str) -> list[Any]:
        with self._translate("list", "events", name):
            listed = self.apis.core.list_namespaced_event(
                self.settings.namespace, field_selector=f"involvedObject.name={name}"
            )
        return list(listed.items or ())

    def _wait_started(self, name: str) -> None:
        """Return once the pod runs (or already ended); raise the reason it can't start."""
        deadline = time.monotonic() + self.start_timeout
        last = "it was never scheduled"
        while time.monotonic() < deadline:
            for pod in self._watch(name, deadline - time.monotonic()):
                state = state_from(pod)
                if state.status in ("running", "exited", "dead"):
                    return
                unschedulable = any(
                    c.reason == "Unschedulable"
                    for c in (pod.status and pod.status.conditions) or ()
                )
                problem = start_problem(pod, self._events(name) if unschedulable else ())
                if problem is not None:
                    raise problem
                last = state.error or state.status
                if time.monotonic() >= deadline:
                    break
            else:
                if self._pod(name) is None:
                    raise ContainerNotFound(f"Kernel pod {name} was deleted while it started.")
        raise RuntimeFailure(
            f"Kernel pod {name} did not start within {self.start_timeout:.0f} s (last: {last}). "
            f"See `kubectl -n {self.settings.namespace} describe pod {name}`; a large image may "
            "need NBC_K8S_START_TIMEOUT raised."
        )

    def state(self, container_id: str) -> ContainerState | None:
        pod = self._pod(container_id)
        return state_from(pod) if pod is not None else None

    def wait(self, container_id: str, timeout: float) -> int | None:
        """As the Protocol says, watching the pod; the API's watch counts whole seconds, so a
        timeout under one second may take one."""
        name = pod_name(container_id)
        deadline = time.monotonic() + timeout
        state = self.state(name)
        while state is not None and state.exit_code is None:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            state = None
            for pod in self._watch(name, left):
                state = state_from(pod)
                if state.exit_code is not None or time.monotonic() >= deadline:
                    break
            if state is None:  # the watch ended: deleted, or the server closed it
                state = self.state(name)
        return state.exit_code if state else None

    def signal(self, container_id: str, signum: int) -> None:
        state = self.state(container_id)
        if state is None:
            raise ContainerNotFound(f"No kernel pod {container_id} in {self.settings.namespace}.")
        if state.status != "running":
            raise RuntimeFailure(f"Kernel pod {state.name} is not running ({state.status}).")
        # The kernel is process 1 of its pod (a pod has no init), and process 1 ignores a
        # signal it has no handler for when it comes from inside the pod: so TERM and KILL
        # go through the kubelet, which deletes the pod (TERM with a grace period).
        if signum in (signal_module.SIGKILL, signal_module.SIGTERM):
            self._delete(state.name, 0 if signum == signal_module.SIGKILL else TERM_GRACE)
            return
        result = self.exec(state.name, signal_command(signum))
        if result.exit_code != 0:
            raise RuntimeFailure(
                f"Sending {signal_module.Signals(signum).name} to kernel pod {state.name} "
                f"failed: {result.output.strip() or f'exit code {result.exit_code}'}"
            )

    def stop(self, container_id: str, timeout: float) -> None:
        """SIGTERM, then SIGKILL after ``timeout``: the pod is deleted (it can't be stopped
        and kept), and reads as exited until the cluster has removed it."""
        self._delete(container_id, int(max(timeout, 0)))

    def remove(self, container_id: str) -> None:
        self._delete(container_id, 0)

    def logs(self, container_id: str, tail: int = 50) -> str:
        from kubernetes.client.exceptions import ApiException

        name = pod_name(container_id)
        with self._translate("get", "pods/log", name):
            try:
                text = self.apis.core.read_namespaced_pod_log(
                    name, self.settings.namespace, container=CONTAINER, tail_lines=max(tail, 0)
                )
            except ApiException as exc:
                if exc.status in (400, 404):  # not started yet, or gone: nothing printed
                    return ""
                raise
        return text if tail > 0 else ""

    def exec(
        self, container_id: str, command: Sequence[str], user: str | None = None
    ) -> ExecResult:
        from kubernetes.stream import stream

        if user:
            raise Unsupported("Kubernetes runs an exec as the pod's own user; drop 'user'.")
        name = pod_name(container_id)
        with self._translate("create", "pods/exec", name):
            client = stream(
                self.apis.core.connect_get_namespaced_pod_exec,
                name,
                self.settings.namespace,
                container=CONTAINER,
                command=list(command),
                stderr=True,
                stdin=False,
                stdout=True,
                tty=False,
                _preload_content=False,
            )
            try:
                client.run_forever(timeout=EXEC_TIMEOUT)
                output, code = client.read_all(), client.returncode
            finally:
                client.close()
        return ExecResult(int(code if code is not None else -1), output)

    def stats(self, container_id: str) -> ContainerStats:
        """The pod's memory limit; use needs the metrics API, which the Role doesn't grant."""
        pod = self._pod(container_id)
        if pod is None:
            raise ContainerNotFound(f"No kernel pod {container_id} in {self.settings.namespace}.")
        limits = pod.spec.containers[0].resources.limits or {}
        memory = limits.get("memory")
        return ContainerStats(None, None, _bytes(memory) if memory else None)

    def list(self, labels: Mapping[str, str | None]) -> Sequence[ContainerState]:
        with self._translate("list", "pods"):
            listed = self.apis.core.list_namespaced_pod(
                self.settings.namespace, label_selector=label_selector(labels)
            )
        states = []
        for pod in listed.items or ():
            state = state_from(pod)
            if all(
                key in state.labels and (value is None or state.labels[key] == value)
                for key, value in labels.items()
            ):
                states.append(state)
        return states


def _bytes(text: str) -> int:
    scale = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40}
    for suffix, factor in scale.items():
        if text.endswith(suffix):
            return int(float(text[: -len(suffix)]) * factor)
    return int(float(text))
