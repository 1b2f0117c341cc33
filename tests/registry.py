"""A tiny Docker Registry HTTP API v2 server for tests: pull only, on 127.0.0.1 (which
dockerd treats as an insecure registry, so plain HTTP works), in a thread.

It serves images made from local ones (``docker save``) plus layers a test adds, as OCI
manifests with uncompressed layers (``application/vnd.oci.image.layer.v1.tar``: a layer's
digest is then its diff id, and nothing is compressed on 2 cores). Blobs can be sent at a
given rate, so a pull lasts long enough to interrupt; the server records every request and
every blob send the client dropped."""

from __future__ import annotations

import hashlib
import io
import json
import re
import socket
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar"
CHUNK = 16 * 1024
_BLOB = re.compile(r"^/v2/(?P<name>.+)/blobs/(?P<digest>sha256:[0-9a-f]{64})$")
_MANIFEST = re.compile(r"^/v2/(?P<name>.+)/manifests/(?P<ref>[^/]+)$")


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def file_digest(path: Path) -> str:
    with path.open("rb") as f:
        return "sha256:" + hashlib.file_digest(f, "sha256").hexdigest()


@dataclass
class Image:
    """An image as the registry holds it: its config and its layers (files, in order)."""

    config: dict[str, Any]
    layers: list[Path]

    def with_layer(self, layer: Path, created_by: str) -> Image:
        """This image plus ``layer`` on top (a new config: a new image id)."""
        config = json.loads(json.dumps(self.config))
        config["rootfs"]["diff_ids"].append(file_digest(layer))
        config.setdefault("history", []).append(
            {"created": "2026-01-01T00:00:00Z", "created_by": created_by}
        )
        return Image(config, [*self.layers, layer])


def saved_image(ref: str, folder: Path) -> Image:
    """The local image ``ref`` as ``docker save`` writes it, unpacked into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    archive = folder / "image.tar"
    subprocess.run(["docker", "save", "-o", str(archive), ref], check=True, capture_output=True)
    with tarfile.open(archive) as tar:
        tar.extractall(folder, filter="data")
    archive.unlink()
    (entry,) = json.loads((folder / "manifest.json").read_text())
    config = json.loads((folder / entry["Config"]).read_text())
    return Image(config, [folder / layer for layer in entry["Layers"]])


def layer_of(files: dict[str, bytes], path: Path) -> Path:
    """A layer tar holding ``files`` (name -> content, mode 0644) at ``path``."""
    with tarfile.open(path, "w") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(content), 0o644, 1767225600
            tar.addfile(info, io.BytesIO(content))
    return path


@dataclass
class Sent:
    """One blob GET: how many bytes went out and whether the client hung up first."""

    path: str
    size: int
    sent: int = 0
    dropped: bool = False
    done: bool = False


@dataclass
class Registry:
    """Serves :class:`Image` s by ``name:tag``; ``rate`` (bytes a second for each blob
    sent, 0: no limit) throttles blob bodies; ``requests`` lists each ``"METHOD path"``."""

    rate: int = 0
    requests: list[str] = field(default_factory=list)
    sends: list[Sent] = field(default_factory=list)
    _blobs: dict[str, bytes | Path] = field(default_factory=dict)
    _manifests: dict[tuple[str, str], bytes] = field(default_factory=dict)
    _server: ThreadingHTTPServer | None = None
    _stopping: threading.Event = field(default_factory=threading.Event)
    _open: set[socket.socket] = field(default_factory=set)

    @property
    def address(self) -> str:
        assert self._server is not None, "the registry is not started"
        return f"127.0.0.1:{self._server.server_address[1]}"

    def add(self, name: str, tag: str, image: Image) -> str:
        """Serve ``image`` as ``name:tag``; return its ref on this registry."""
        config = json.dumps(image.config).encode()
        self._blobs[digest_of(config)] = config
        layers = []
        for path in image.layers:
            digest = file_digest(path)
            self._blobs[digest] = path
            layers.append({"mediaType": LAYER_TYPE, "digest": digest, "size": path.stat().st_size})
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": {"mediaType": CONFIG_TYPE, "digest": digest_of(config), "size": len(config)},
            "layers": layers,
        }
        body = json.dumps(manifest).encode()
        self._manifests[(name, tag)] = self._manifests[(name, digest_of(body))] = body
        return f"{self.address}/{name}:{tag}"

    def in_flight(self) -> list[Sent]:
        return [s for s in self.sends if not s.done]

    def withdraw(self) -> None:
        """Stop serving every image and end every send now: an engine still pulling (after a
        test failed) gets a cut layer, then 404s on retrying, so it never finishes the pull
        after the test's clean-up."""
        self._blobs.clear()
        self._manifests.clear()
        self._stopping.set()
        for conn in list(self._open):
            with suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + 5
        while self.in_flight() and time.monotonic() < deadline:
            time.sleep(0.05)
        self._stopping.clear()

    @contextmanager
    def running(self) -> Iterator[Registry]:
        registry = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 30  # an idle keep-alive connection does not hold a thread forever

            def setup(self) -> None:
                super().setup()
                registry._open.add(self.connection)

            def finish(self) -> None:
                registry._open.discard(self.connection)
                super().finish()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the tests read `requests` instead

            def do_HEAD(self) -> None:
                self._answer(body=False)

            def do_GET(self) -> None:
                self._answer(body=True)

            def _answer(self, body: bool) -> None:
                registry.requests.append(f"{self.command} {self.path}")
                path = self.path.split("?")[0]
                if path == "/v2/":
                    return self._send(200, b"{}", "application/json", body)
                found = _MANIFEST.match(path)
                if found and (found["name"], found["ref"]) in registry._manifests:
                    data = registry._manifests[(found["name"], found["ref"])]
                    return self._send(200, data, MANIFEST_TYPE, body, digest_of(data))
                found = _BLOB.match(path)
                if found and found["digest"] in registry._blobs:
                    return self._blob(registry._blobs[found["digest"]], found["digest"], body)
                code = "MANIFEST_UNKNOWN" if "/manifests/" in path else "BLOB_UNKNOWN"
                error = {"errors": [{"code": code, "message": "unknown", "detail": path}]}
                self._send(404, json.dumps(error).encode(), "application/json", body)

            def _headers(self, status: int, size: int, kind: str, digest: str | None) -> None:
                self.send_response(status)
                self.send_header("Docker-Distribution-API-Version", "registry/2.0")
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(size))
                if digest:
                    self.send_header("Docker-Content-Digest", digest)
                self.end_headers()

            def _send(
                self, status: int, data: bytes, kind: str, body: bool, digest: str | None = None
            ) -> None:
                self._headers(status, len(data), kind, digest)
                if body:
                    self.wfile.write(data)

            def _blob(self, blob: bytes | Path, digest: str, body: bool) -> None:
                size = len(blob) if isinstance(blob, bytes) else blob.stat().st_size
                self._headers(200, size, "application/octet-stream", digest)
                if not body:
                    return
                sent = Sent(self.path, size)
                registry.sends.append(sent)
                stream = io.BytesIO(blob) if isinstance(blob, bytes) else blob.open("rb")
                started = time.monotonic()
                try:
                    with stream:
                        while not registry._stopping.is_set() and (chunk := stream.read(CHUNK)):
                            self.wfile.write(chunk)
                            sent.sent += len(chunk)
                            if registry.rate:
                                ahead = sent.sent / registry.rate - (time.monotonic() - started)
                                if ahead > 0:
                                    time.sleep(ahead)
                except (BrokenPipeError, ConnectionResetError):
                    sent.dropped = True
                    self.close_connection = True
                finally:
                    sent.done = True

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = False  # server_close joins every handler thread
        self._stopping.clear()
        self._server = server
        thread = threading.Thread(target=server.serve_forever, name="test-registry", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stopping.set()  # a throttled send still under way ends now
            server.shutdown()
            for conn in list(self._open):  # dockerd keeps idle connections open
                with suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
            server.server_close()
            thread.join(timeout=10)
            self._server = None
