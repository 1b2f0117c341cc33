"""What a pull's event stream (as Docker 20.10 sent it here, against the tests' registry)
becomes as progress: bytes downloaded and layers done, never the extraction counted again."""

from __future__ import annotations

import pytest

from nbcontainers.errors import RuntimeFailure
from nbcontainers.runtimes.docker.wire import follow_events

MB = 1_000_000


def _events() -> list[dict[str, object]]:
    def moving(status: str, layer: str, current: int, total: int) -> dict[str, object]:
        return {
            "status": status,
            "id": layer,
            "progressDetail": {"current": current, "total": total},
        }

    return [
        {"status": "Pulling from nbc-try/img", "id": "1"},
        {"status": "Already exists", "progressDetail": {}, "id": "55f8eead4381"},
        {"status": "Pulling fs layer", "progressDetail": {}, "id": "ab20455f13b0"},
        {"status": "Pulling fs layer", "progressDetail": {}, "id": "c0ffee000001"},
        moving("Downloading", "ab20455f13b0", 1 * MB, 4 * MB),
        moving("Downloading", "c0ffee000001", 2 * MB, 8 * MB),
        {"status": "Verifying Checksum", "progressDetail": {}, "id": "ab20455f13b0"},
        {"status": "Download complete", "progressDetail": {}, "id": "ab20455f13b0"},
        moving("Extracting", "ab20455f13b0", 1 * MB, 4 * MB),
        moving("Downloading", "c0ffee000001", 8 * MB, 8 * MB),
        {"status": "Download complete", "progressDetail": {}, "id": "c0ffee000001"},
        moving("Extracting", "c0ffee000001", 3 * MB, 8 * MB),
        {"status": "Pull complete", "progressDetail": {}, "id": "ab20455f13b0"},
        {"status": "Pull complete", "progressDetail": {}, "id": "c0ffee000001"},
        {"status": "Digest: sha256:" + "8489b697" * 8},
        {"status": "Status: Downloaded newer image for 127.0.0.1:40329/nbc-try/img:1"},
    ]  # fmt: skip


def test_progress_counts_downloaded_bytes_and_finished_layers() -> None:
    seen: list[tuple[str, int, int | None]] = []
    follow_events(_events(), "pulling x", lambda *a: seen.append(a), lambda e: e)
    done = [d for _, d, _ in seen]
    assert done == sorted(done)  # extraction does not send the bar back
    assert seen[0] == ("pulling x, 1/3 layers", 1 * MB, 4 * MB)
    assert seen[-1] == ("pulling x, 3/3 layers", 12 * MB, 12 * MB)
    assert ("pulling x, 2/3 layers", 4 * MB + 2 * MB, 12 * MB) in seen


def test_an_error_event_raises_with_the_engine_s_words() -> None:
    events = [*_events()[:5], {"error": "unexpected EOF", "errorDetail": {}}]
    with pytest.raises(RuntimeFailure, match=r"^pull x: unexpected EOF$"):
        follow_events(events, "pulling x", None, lambda e: f"pull x: {e}")
