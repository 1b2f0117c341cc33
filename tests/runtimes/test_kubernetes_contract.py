"""The runtime contract's behaviours that mean something for pods, run unchanged (imported
from test_contract.py) against the Kubernetes runtime over the in-memory API.

Left out, by design: builds and pulls (the cluster's nodes pull; ``build``/``pull`` raise
``Unsupported``), joining a network namespace (a pod can't join another's), and the limits
test's memory-use sample (use needs the metrics API, which the Role does not grant).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from nbcontainers.labels import KERNEL_ID
from tests.k8s.fake_api import FakeCluster, runtime_for
from tests.runtimes.test_contract import (
    Engine,
    test_a_missing_image_leaves_nothing,
    test_a_taken_name_is_a_conflict,
    test_advice_is_in_the_engines_own_words,
    test_exec_in_a_running_container,
    test_exit_code_and_logs,
    test_placement_is_honoured_or_refused,
    test_run_state_labels_and_list,
    test_signal_ends_a_container_under_init,
    test_stop_and_remove_are_idempotent,
    test_wait_times_out_on_a_running_container,
)

__all__ = [
    "test_a_missing_image_leaves_nothing",
    "test_a_taken_name_is_a_conflict",
    "test_advice_is_in_the_engines_own_words",
    "test_exec_in_a_running_container",
    "test_exit_code_and_logs",
    "test_placement_is_honoured_or_refused",
    "test_run_state_labels_and_list",
    "test_signal_ends_a_container_under_init",
    "test_stop_and_remove_are_idempotent",
    "test_wait_times_out_on_a_running_container",
]


@pytest.fixture
def engine() -> Iterator[Engine]:
    """The contract's engine fixture, for a kernel pod runtime (it overrides the module's)."""
    cluster = FakeCluster(images=("registry.example/contract/base:1",))
    runtime = runtime_for(cluster)
    made = Engine(runtime, "registry.example/contract/base:1")
    yield made
    for cid in reversed(made.made):
        runtime.remove(cid)
    left = runtime.list({KERNEL_ID: f"contract-{made.tag}"})
    assert left == [], f"left behind on kubernetes: {[s.name for s in left]}"
    assert cluster.secrets == {} and cluster.policies == {}
