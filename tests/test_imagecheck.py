"""`images check` reads the probe's answer into problems that say what to change in the image
(the real engine's answers are in tests/cli/test_cli_docker.py)."""

from __future__ import annotations

import json

import pytest

from nbcontainers.catalog.entries import load_catalog
from nbcontainers.doctor import check_image
from nbcontainers.runtimes.fake import FakeRuntime


@pytest.mark.parametrize(
    ("facts", "said"),
    [
        ({"python": "3.12.1", "uid": 48213, "home_writable": True}, "python3 has no ipykernel"),
        (
            {"python": "3.11", "ipykernel": "6.29", "kernelapp": True, "home_writable": False},
            "HOME=/home/nbc is not writable as uid 48213",
        ),
    ],
)
def test_problems_say_what_to_change(
    fake_runtime: FakeRuntime, monkeypatch: pytest.MonkeyPatch, facts: dict[str, object], said: str
) -> None:
    monkeypatch.setattr(fake_runtime, "logs", lambda cid, tail=50: "NBC-CHECK " + json.dumps(facts))
    ref = load_catalog()["python"].ref
    report = check_image(fake_runtime, ref, timeout=0.1)
    assert not report.ok and said in report.problems[0]
    (spec,) = fake_runtime.specs
    assert spec.user == "48213:48213" and spec.network_mode == "none"
    assert spec.tmpfs.keys() == {"/home/nbc"} and spec.cap_drop == ("ALL",)
    assert fake_runtime.list({}) == []  # the check's container is removed


def test_a_good_answer_is_ok(fake_runtime: FakeRuntime, monkeypatch: pytest.MonkeyPatch) -> None:
    facts = {"python": "3.11", "ipykernel": "6.29", "kernelapp": True, "home_writable": True}
    monkeypatch.setattr(fake_runtime, "logs", lambda cid, tail=50: "NBC-CHECK " + json.dumps(facts))
    assert check_image(fake_runtime, load_catalog()["python"].ref, timeout=0.1).ok
