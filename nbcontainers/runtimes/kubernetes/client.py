"""The Kubernetes client's set-up and errors: settings from ``NBC_K8S_*``, credentials (the
pod's service account, else a kubeconfig), and ApiExceptions turned into nbcontainers errors
that name the missing verb and the Role."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import (
    BuildError,
    ConfigError,
    ContainerConflict,
    ContainerNotFound,
    EngineUnavailable,
    NbcontainersError,
    RuntimeFailure,
    Unsupported,
)
from ..base import BuildCallback, BuildRequest, EngineFacts, ImageInfo, ProgressCallback
from .names import ROLE
from .pods import PodSettings
from .status import missing_verbs
from .template import load_template

__all__ = [
    "DEFAULT_START_TIMEOUT",
    "LIMITS",
    "SA_DIR",
    "Apis",
    "ClusterImages",
    "check_role",
    "cluster_facts",
    "connect",
    "settings_from_env",
    "translate",
]

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
DEFAULT_START_TIMEOUT = 600.0
LIMITS = frozenset({"memory", "cpus", "shm"})  # no per-pod pids limit (the kubelet sets it)


def cluster_facts(version: str, endpoint: str, namespace: str) -> EngineFacts:
    """What a cluster at ``endpoint`` can do for kernels in ``namespace``."""
    return EngineFacts(
        name="kubernetes",
        version=version,
        api_version="v1",
        endpoint=f"{endpoint} (namespace {namespace})",
        os="linux",
        rootless=False,
        gpu_mode="extended-resources",
        limits=LIMITS,
        remote=True,
        placement=True,  # node selectors and affinity: see placement.py
    )


def _pairs(text: str, what: str) -> dict[str, str]:
    pairs = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{what}={text!r}: use key=value pairs separated by commas.")
        pairs[key.strip()] = value.strip()
    return pairs


def settings_from_env(env: Mapping[str, str] | None = None) -> tuple[PodSettings, float]:
    """The pod settings and start timeout the ``NBC_K8S_*`` variables ask for."""
    env = os.environ if env is None else env
    own = ""  # the notebook pod's own namespace, where the runtime runs in a cluster
    if (SA_DIR / "namespace").is_file():
        own = (SA_DIR / "namespace").read_text().strip()
    namespace = env.get("NBC_K8S_NAMESPACE", "") or own
    try:
        timeout = float(env.get("NBC_K8S_START_TIMEOUT") or DEFAULT_START_TIMEOUT)
    except ValueError:
        raise ConfigError("NBC_K8S_START_TIMEOUT must be a number of seconds.") from None
    settings = PodSettings(
        namespace=namespace or "default",
        node_selector=_pairs(env.get("NBC_K8S_NODE_SELECTOR", ""), "NBC_K8S_NODE_SELECTOR"),
        image_pull_secrets=tuple(
            filter(None, (s.strip() for s in env.get("NBC_K8S_IMAGE_PULL_SECRET", "").split(",")))
        ),
        owner_selector=_pairs(env.get("NBC_K8S_OWNER_SELECTOR", ""), "NBC_K8S_OWNER_SELECTOR"),
        template=load_template(env["NBC_K8S_POD_TEMPLATE"])
        if env.get("NBC_K8S_POD_TEMPLATE")
        else {},
        owner_namespace=env.get("NBC_K8S_OWNER_NAMESPACE", "") or own,
        pod_policies=_policy_mode(env.get("NBC_K8S_NETWORK_POLICY", "pod")),
    )
    return settings, timeout


def _policy_mode(value: str) -> bool:
    if value not in ("pod", "namespace"):
        raise ConfigError(
            f"NBC_K8S_NETWORK_POLICY={value!r}: use 'pod' (a NetworkPolicy per kernel) or "
            "'namespace' (the kernel namespace's own policy, from `nbcontainers k8s manifests`)."
        )
    return value == "pod"


@dataclass(frozen=True)
class Apis:
    """The client's API objects for one cluster, and the API server's address."""

    endpoint: str
    core: Any  # CoreV1Api
    networking: Any  # NetworkingV1Api
    version: Any  # VersionApi
    authorization: Any  # AuthorizationV1Api


def connect(context: str | None) -> Apis:
    """The APIs with the pod's service account, or with the kubeconfig (its ``context``)
    outside a cluster."""
    try:
        from kubernetes import client, config
    except ImportError:
        raise ConfigError(
            "The Kubernetes runtime needs the official client: "
            "`pip install 'nbcontainers[kubernetes]'`."
        ) from None
    try:
        if (SA_DIR / "token").is_file() and context is None:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
        else:
            config.load_kube_config(context=context)  # type: ignore[no-untyped-call]
    except (config.ConfigException, OSError) as exc:
        raise EngineUnavailable(
            f"No Kubernetes credentials here ({exc}): run the notebook server in a pod with "
            "the service account from `nbcontainers k8s manifests`, or point KUBECONFIG at a "
            "kubeconfig."
        ) from None
    api = client.ApiClient()
    return Apis(
        str(api.configuration.host),
        client.CoreV1Api(api),
        client.NetworkingV1Api(api),
        client.VersionApi(api),
        client.AuthorizationV1Api(api),
    )


@contextmanager
def translate(
    endpoint: str, namespace: str, verb: str, resource: str, name: str = ""
) -> Iterator[None]:
    """Turn the client's exceptions while doing ``verb`` on ``resource`` into nbcontainers
    errors that say what to do."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    what = f"{verb} {resource}{' ' + name if name else ''} in namespace {namespace}"
    try:
        yield
    except NbcontainersError:
        raise
    except ApiException as exc:
        detail = _reason(exc)
        if exc.status == 403 and (refused := _admission(detail, namespace)):
            raise RuntimeFailure(f"The cluster refused to {what}: {refused}") from None
        if exc.status == 403:
            raise RuntimeFailure(
                f"The cluster refused to {what} (403 Forbidden: {detail}). The notebook "
                f"server's service account needs the verb {verb!r} on {resource!r} in its "
                f"kernel namespace ({namespace}), from the Role {ROLE!r}: the admin names this "
                "server's user in `nbcontainers k8s manifests --user` (or `--team`) and "
                "applies both files it writes."
            ) from None
        if exc.status == 401:
            raise EngineUnavailable(
                f"The cluster at {endpoint} rejected our credentials (401) trying to {what}. "
                "Check the service account token or kubeconfig."
            ) from None
        if exc.status == 404:
            raise ContainerNotFound(f"Cannot {what}: {detail}") from None
        if exc.status == 409:
            raise ContainerConflict(f"Cannot {what}: {detail}") from None
        raise RuntimeFailure(f"Cannot {what} ({exc.status}: {detail})") from None
    except (HTTPError, OSError) as exc:
        raise EngineUnavailable(
            f"Cannot reach the Kubernetes API server at {endpoint} to {what} ({exc}). Check "
            "the cluster is up and the notebook pod may reach the API server (the Zero to "
            "JupyterHub snippet from `nbcontainers k8s manifests` allows it)."
        ) from None


def _admission(detail: str, namespace: str) -> str:
    """What an admission controller's 403 means and what fixes it ("" for RBAC's 403): the
    kernel namespace's quota, its limits, or its Pod Security level."""
    if "exceeded quota" in detail:
        return (
            f"{detail}. Namespace {namespace} has reached its quota: stop a kernel, or ask the "
            "admin to raise it (`nbcontainers k8s manifests --quota-pods/--quota-cpu/"
            "--quota-memory/--quota-gpus`)."
        )
    if "maximum" in detail and "per Container" in detail:
        return (
            f"{detail}. Ask for less (c.ContainerProvisioner.mem_limit / cpus), or ask the "
            "admin to raise `--max-memory`/`--max-cpu`."
        )
    if "violates PodSecurity" in detail:
        return (
            f"{detail}. Kernel namespaces enforce Pod Security 'restricted': remove what the "
            "message names from NBC_K8S_POD_TEMPLATE."
        )
    return ""


def _reason(exc: Any) -> str:
    """The Status message in an ApiException's body, else its reason."""
    try:
        return str(json.loads(exc.body or "{}").get("message") or exc.reason)
    except (ValueError, AttributeError):
        return str(exc.reason)


def check_role(
    authorization: Any, endpoint: str, namespace: str, pod_policies: bool = True
) -> None:
    """Refuse, naming what is missing, when the service account lacks a verb the runtime
    calls (a SelfSubjectRulesReview, which every account may ask for); skipped where the
    cluster won't answer it or says its answer is incomplete (a webhook authorizer)."""
    from kubernetes import client as k
    from kubernetes.client.exceptions import ApiException

    review = k.V1SelfSubjectRulesReview(spec=k.V1SelfSubjectRulesReviewSpec(namespace=namespace))
    with translate(endpoint, namespace, "create", "selfsubjectrulesreviews"):
        try:
            status = authorization.create_self_subject_rules_review(review).status
        except ApiException as exc:
            if exc.status in (403, 404):  # not allowed to ask: the first real call will say
                return
            raise
    rules = status.resource_rules or ()
    missing = missing_verbs(rules, pod_policies) if not status.incomplete else []
    if missing:
        raise RuntimeFailure(
            f"The notebook server's service account may not {', '.join(missing)} in namespace "
            f"{namespace}, which kernel pods need. The Role {ROLE!r} there and its RoleBinding "
            "come from `nbcontainers k8s manifests --user` (or `--team`) naming this server's "
            "user: ask the admin to list it and apply both files."
        )


class ClusterImages:
    """The image half of the runtime Protocol for a cluster, whose nodes pull images
    themselves when a pod starts: nothing to build, pull, push or remove here."""

    def image_info(self, ref: str) -> ImageInfo | None:
        """The cluster's nodes pull images themselves: every ref is taken as present here,
        and a ref no node can pull fails the pod's start with ``ImageMissing``."""
        return ImageInfo(id="", tags=(ref,), repo_digests=(), labels={}, size=0, created="")

    def _no_images(self, what: str) -> Unsupported:
        return Unsupported(
            f"A Kubernetes cluster does not {what} images for nbcontainers: build them on a "
            "Docker or Podman host (`nbcontainers images build`), `docker push` them to a "
            "registry the cluster pulls from, and name those refs in the catalog."
        )

    def pull(self, ref: str, progress: ProgressCallback | None = None) -> ImageInfo:
        raise self._no_images("pull (its nodes do, when a pod starts)")

    def push(self, ref: str, target: str, progress: ProgressCallback | None = None) -> str:
        raise self._no_images("push")

    def build(self, request: BuildRequest, on_event: BuildCallback | None = None) -> ImageInfo:
        raise self._no_images("build")

    def builder(self) -> str:
        raise BuildError(str(self._no_images("build")))

    def remove_image(self, ref: str) -> None:
        raise self._no_images("remove")

    def images(
        self, labels: Mapping[str, str | None] | None = None, repository: str | None = None
    ) -> list[ImageInfo]:
        raise Unsupported(
            "A Kubernetes cluster's images live on its nodes, which nbcontainers can't list "
            "or prune: ask the cluster's admin (the kubelet's image garbage collection frees "
            "unused ones), or prune on the Docker or Podman host that built them."
        )
