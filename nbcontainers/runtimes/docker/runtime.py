"""Docker Engine runtime: the only module that imports the Docker SDK; it translates its errors.

DockerRuntime is long because it is the whole ContainerRuntime Protocol for the Docker Engine
API (about twenty methods, each a few lines around one docker-py call and its errors), which
Podman and Swarm inherit; the request and answer shapes live in ``wire.py``.
"""

from __future__ import annotations

import contextlib
import os
import signal as signal_module
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from ...errors import (
    ContainerConflict,
    ContainerNotFound,
    EngineUnavailable,
    ImageMissing,
    NbcontainersError,
    RuntimeFailure,
)
from .. import cdi, engine_facts
from ..base import (
    BuildCallback,
    BuildRequest,
    ContainerSpec,
    ContainerState,
    ContainerStats,
    EngineFacts,
    ExecResult,
    ImageInfo,
    ProgressCallback,
    refuse_unenforceable,
)
from ..buildkit import build_argv, build_tagged, find_builder
from .wire import (
    CPUCounters,
    ListedStates,
    device_requests,
    engine_fix_hint,
    explanation,
    facts_from,
    follow_events,
    host_config,
    images_from,
    label_filter,
    one_shot_supported,
    repo_and_tag,
    state_from,
    stats_since,
)

__all__ = ["DockerRuntime", "tagger"]

PING_TIMEOUT = 5.0  # a dead engine is reported within this many seconds
CALL_TIMEOUT = 120.0


_Labels = Mapping[str, "str | None"] | None


def _endpoint() -> str:
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


class DockerRuntime:
    """A :class:`~nbcontainers.runtimes.base.ContainerRuntime` over the Docker Engine API.

    The SDK client is created on first use, with a short timeout for the first
    call so that a dead engine is reported in seconds, not minutes. Podman's
    Docker-compatible API is driven by the subclass in ``podman.py`` through the hooks
    ``engine_label``, ``_fix_hint``, ``_connect``, ``_ask_facts``, ``_gpu_options`` and
    ``build``.
    """

    engine_label = "Docker engine"

    def __init__(self, base_url: str | None = None) -> None:
        self._base_url = base_url
        self._client: Any = None

    # -- plumbing ---------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        return self._base_url or _endpoint()

    def _fix_hint(self, detail: str) -> str:
        return engine_fix_hint(self.endpoint, detail)

    def _connect(self) -> None:
        """Called before the first client is made: a place to start the engine."""

    @property
    def api(self) -> Any:
        """The low-level ``docker.APIClient``, created lazily."""
        if self._client is None:
            self._connect()
            import docker
            import docker.errors

            try:
                if self._base_url:
                    client = docker.DockerClient(base_url=self._base_url, timeout=PING_TIMEOUT)
                else:
                    client = docker.from_env(timeout=PING_TIMEOUT)
            except docker.errors.DockerException as exc:
                raise EngineUnavailable(
                    f"Cannot reach the {self.engine_label} at {self.endpoint}. "
                    + self._fix_hint(str(exc))
                ) from None
            client.api.timeout = CALL_TIMEOUT
            self._client = client
        return self._client.api

    @contextmanager
    def _translate(self, what: str) -> Iterator[None]:
        """Turn SDK and transport errors into nbcontainers errors that say what to do."""
        import docker.errors
        import requests.exceptions

        try:
            yield
        except NbcontainersError:
            raise
        except docker.errors.ImageNotFound as exc:
            raise ImageMissing(f"{what}: {explanation(exc)}") from None
        except docker.errors.NotFound as exc:
            raise ContainerNotFound(f"{what}: {explanation(exc)}") from None
        except docker.errors.APIError as exc:
            # 409: a name in use, or a container in a state that refuses the operation.
            # Podman answers a taken name with a 500 that says so.
            taken = exc.status_code == 409 or "is already in use" in explanation(exc)
            kind = ContainerConflict if taken else RuntimeFailure
            raise kind(f"{what}: {explanation(exc)}") from None
        except (requests.exceptions.ConnectionError, ConnectionError) as exc:
            raise EngineUnavailable(
                f"Lost the {self.engine_label} at {self.endpoint} while trying to {what}. "
                + self._fix_hint(str(exc))
            ) from None
        except requests.exceptions.Timeout:
            raise EngineUnavailable(
                f"The {self.engine_label} at {self.endpoint} did not answer in time while "
                f"trying to {what}. Check `{self.engine_label.split()[0].lower()} info`; a busy "
                "or hung engine may need a restart."
            ) from None
        except docker.errors.DockerException as exc:
            raise RuntimeFailure(f"{what}: {exc}") from None

    # -- engine and images ------------------------------------------------------------------

    def ping(self) -> EngineFacts:
        # Always asks (two round trips, ~10 ms): callers that only want the facts use
        # runtimes.engine_facts, the process's one cache of them.
        return self._ask_facts()

    def _ask_facts(self) -> EngineFacts:
        with self._translate("ask the engine for its version"):
            return facts_from(self.api.version(), self.api.info(), self.endpoint)

    def advice(self, topic: str, subject: str) -> str:
        if topic == "start":  # the engine does not answer: what starts it on this host
            from .fixes import start_fix_here

            return start_fix_here(subject)
        cli = self.engine_label.split()[0].lower()  # docker, podman: this host runs it all
        where = {"locate": f"`{cli} inspect {subject}` on this host", "node": f"`{cli} info`"}
        return where.get(topic, "")

    def builder(self) -> str:
        return find_builder().description

    def image_info(self, ref: str) -> ImageInfo | None:
        import docker.errors

        with self._translate(f"inspect image {ref}"):
            try:
                data = self.api.inspect_image(ref)
            except docker.errors.ImageNotFound:
                return None
        config = data.get("Config") or {}
        return ImageInfo(
            id=str(data.get("Id", "")),
            tags=tuple(data.get("RepoTags") or ()),
            repo_digests=tuple(data.get("RepoDigests") or ()),
            labels=dict(config.get("Labels") or {}),
            size=int(data.get("Size") or 0),
            created=str(data.get("Created", "")),
        )

    def pull(self, ref: str, progress: ProgressCallback | None = None) -> ImageInfo:
        repo, tag = repo_and_tag(ref)
        # Closed at once, not left to a traceback, the SDK's generator frees its connection.
        with (
            self._translate(f"pull {ref}"),
            contextlib.closing(self.api.pull(repo, tag=tag, stream=True, decode=True)) as events,
        ):
            follow_events(events, f"pulling {ref}", progress, lambda e: f"pull {ref}: {e}")
        info = self.image_info(ref)
        if info is None:
            raise ImageMissing(f"Pulled {ref} but the engine does not list it afterwards.")
        return info

    def push(self, ref: str, target: str, progress: ProgressCallback | None = None) -> str:
        """Tag ``ref`` as ``target`` (registry/repo:tag) and push it; return the pushed digest."""
        repo, _, tag = (
            target.rpartition(":") if ":" in target.split("/")[-1] else (target, "", "latest")
        )
        with self._translate(f"push {target}"):
            self.api.tag(ref, repo, tag=tag or "latest")
            events = self.api.push(repo, tag=tag or "latest", stream=True, decode=True)
            return follow_events(
                events,
                f"pushing {target}",
                progress,
                lambda error: (
                    f"push {target}: {error}. Log in first (`docker login "
                    f"{target.split('/')[0]}`) or check the registry address."
                ),
            )

    def build(self, request: BuildRequest, on_event: BuildCallback | None = None) -> ImageInfo:
        """Build through a BuildKit command line (the Engine API's builder has no secrets)."""
        builder = find_builder()
        env = {**os.environ, **builder.env}
        if self._base_url:
            env["DOCKER_HOST"] = self._base_url  # the client must talk to this engine
        argv = build_argv(builder, request)
        return build_tagged(self, argv, env, request, on_event, tagger(self))

    def remove_image(self, ref: str) -> None:
        import docker.errors

        with self._translate(f"remove image {ref}"):
            try:
                self.api.remove_image(ref, force=True)
            except docker.errors.NotFound:  # Podman answers a plain 404
                return

    def _image_config(self, ref: str) -> cdi.ImageConfig:
        """The image's own environment and command (what applying a CDI spec must keep)."""
        import docker.errors

        with self._translate(f"inspect image {ref}"):
            try:
                config = self.api.inspect_image(ref).get("Config") or {}
            except docker.errors.ImageNotFound:
                return cdi.ImageConfig()  # the start says so, with its own words
        env = dict(str(e).partition("=")[::2] for e in config.get("Env") or ())
        return cdi.ImageConfig(env=env, command=tuple(config.get("Cmd") or ()))

    def images(self, labels: _Labels = None, repository: str | None = None) -> list[ImageInfo]:
        with self._translate("list images"):
            return images_from(self.api.images(filters=label_filter(labels)), repository)

    # -- containers -------------------------------------------------------------------------

    def run(self, spec: ContainerSpec) -> str:
        refuse_unenforceable(spec, engine_facts(self).limits, self.engine_label)
        if spec.gpus is not None and not self._native_gpus():
            spec = cdi.give_gpus(spec, engine_facts(self).rootless, self._image_config(spec.image))
        with self._translate(f"start a container from {spec.image}"):
            created = self.api.create_container(
                spec.image,
                command=list(spec.command) or None,  # none: the image's CMD
                name=spec.name,
                labels=dict(spec.labels),
                environment=dict(spec.env),
                working_dir=spec.working_dir,
                user=spec.user,
                ports=list(spec.ports) or None,
                host_config=host_config(self.api, spec, self._gpu_options(spec)),
                detach=True,
            )
            container_id = str(created["Id"])
            try:
                self.api.start(container_id)
            except Exception:
                # Created but never started: nothing to inspect, remove it so nothing leaks.
                with contextlib.suppress(Exception):
                    self.api.remove_container(container_id, force=True, v=True)
                raise
        return container_id

    def _native_gpus(self) -> bool:
        """Whether the engine hands out GPUs itself (Docker with the NVIDIA runtime); else
        the host's CDI spec is applied here (runtimes/cdi.py)."""
        return "nvidia" in engine_facts(self).runtimes or not cdi.applicable()

    def _gpu_options(self, spec: ContainerSpec) -> dict[str, Any]:
        """HostConfig arguments that give ``spec`` its GPUs: Docker's device requests."""
        if spec.gpus is None:
            return {}
        return device_requests(
            count=spec.gpus.count if not spec.gpus.device_ids else None,
            device_ids=list(spec.gpus.device_ids) or None,
            capabilities=[["gpu"]],
        )

    def state(self, container_id: str) -> ContainerState | None:
        import docker.errors

        with self._translate(f"inspect container {container_id[:12]}"):
            try:
                data = self.api.inspect_container(container_id)
            except docker.errors.NotFound:
                return None
        return state_from(data)

    def wait(self, container_id: str, timeout: float) -> int | None:
        """Exit code once the container exits, or None if it still runs after ``timeout``."""
        import docker.errors
        import requests.exceptions
        import urllib3.exceptions

        with self._translate(f"wait for container {container_id[:12]}"):
            try:
                result = self.api.wait(container_id, timeout=timeout)
            except (requests.exceptions.ReadTimeout, docker.errors.NotFound):
                return None
            except requests.exceptions.ConnectionError as exc:
                # Over a unix socket, requests reports a read timeout as a ConnectionError
                # wrapping urllib3's ReadTimeoutError: the container still runs.
                if not any(isinstance(a, urllib3.exceptions.ReadTimeoutError) for a in exc.args):
                    raise
                return None
        return int(result.get("StatusCode", -1))

    def signal(self, container_id: str, signum: int) -> None:
        name = signal_module.Signals(signum).name
        with self._translate(f"send {name} to container {container_id[:12]}"):
            self.api.kill(container_id, signal=name)

    def stop(self, container_id: str, timeout: float) -> None:
        import docker.errors

        with self._translate(f"stop container {container_id[:12]}"):
            try:
                self.api.stop(container_id, timeout=int(max(timeout, 0)))
            except docker.errors.NotFound:
                return

    def remove(self, container_id: str) -> None:
        import docker.errors

        with self._translate(f"remove container {container_id[:12]}"):
            try:
                self.api.remove_container(container_id, force=True, v=True)
            except docker.errors.NotFound:
                return
            except docker.errors.APIError as exc:
                # Removal already under way (e.g. a concurrent cleanup): that is success.
                if "already in progress" in str(exc):
                    return
                raise

    def logs(self, container_id: str, tail: int = 50) -> str:
        import docker.errors

        with self._translate(f"read logs of container {container_id[:12]}"):
            try:
                raw = self.api.logs(container_id, stdout=True, stderr=True, tail=tail)
            except docker.errors.NotFound:
                return ""
        return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)

    def list(self, labels: Mapping[str, str | None]) -> Sequence[ContainerState]:
        """One listing call; a container is inspected only when its row differs from the state
        kept from an earlier listing (``ListedStates``: new, or its status or name changed)."""
        kept: ListedStates = self.__dict__.setdefault("_listed", ListedStates())
        with self._translate("list containers"):
            rows = self.api.containers(all=True, filters=label_filter(labels))
            reused = {str(row["Id"]): kept.reuse(row) for row in rows}
            asked = self._states_of(cid for cid, state in reused.items() if state is None)
        kept.keep(asked)
        fresh = {state.id: state for state in asked}
        return [s for cid, r in reused.items() if (s := r or fresh.get(cid)) is not None]

    def _states_of(self, ids: Iterable[str]) -> Sequence[ContainerState]:
        # One may be gone between the listing and the asking: it is left out.
        return [state for state in map(self.state, ids) if state is not None]

    def exec(
        self, container_id: str, command: Sequence[str], user: str | None = None
    ) -> ExecResult:
        with self._translate(f"run {' '.join(command)[:40]} in container {container_id[:12]}"):
            created = self.api.exec_create(container_id, list(command), user=user or "")
            raw = self.api.exec_start(created["Id"], stream=False)
            code = self.api.exec_inspect(created["Id"]).get("ExitCode")
        output = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        return ExecResult(int(code if code is not None else -1), output)

    def stats(self, container_id: str) -> ContainerStats:
        """One sample of CPU/memory use. The first of a container waits for the engine's two
        samples (about a second); a later one within ``CPU_BASE_AGE`` asks for one
        (``one_shot``) and measures CPU against the counters kept from the one before."""
        import docker.errors

        counters: CPUCounters = self.__dict__.setdefault("_cpu_counters", CPUCounters())
        before = counters.previous(container_id)
        with self._translate(f"read stats of container {container_id[:12]}"):
            one_shot = before is not None and counters.one_shot and one_shot_supported(self.api)
            try:
                raw = self.api.stats(container_id, stream=False, one_shot=one_shot or None)
            except docker.errors.APIError as exc:
                if not one_shot or exc.status_code != 400:
                    raise
                # An engine that says API 1.41 but refuses one_shot: two samples from now on.
                counters.one_shot = one_shot = False
                raw = self.api.stats(container_id, stream=False)
        counters.keep(container_id, raw)
        return stats_since(raw, before if one_shot else None)


def tagger(runtime: DockerRuntime) -> Callable[[str, str], None]:
    """``tag(image_id, ref)`` on ``runtime``'s engine (what a cancelled build restores)."""
    return lambda image_id, ref: runtime.api.tag(image_id, *repo_and_tag(ref))
