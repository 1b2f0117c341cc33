"""Placement rules on a kernel pod: a node's hostname or labels, as Kubernetes selects nodes.

``==`` rules join the pod's ``nodeSelector`` (``kubernetes.io/hostname`` for a hostname);
``!=`` rules become ``NotIn`` expressions of its required node affinity. They are laid on
after the admin's ``NBC_K8S_NODE_SELECTOR`` and pod template and only ever narrow them: a rule
that contradicts the admin's selector is refused, and the ``NotIn`` expressions join every
one of the admin's node selector terms (Kubernetes ORs the terms and ANDs the expressions of
one), so a user's rule never opens a node the admin closed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...errors import Unsupported
from ..base import Placement
from .names import valid_label

__all__ = ["HOSTNAME_LABEL", "confine", "node_label"]

HOSTNAME_LABEL = "kubernetes.io/hostname"  # the kubelet sets it on every node


def node_label(rule: Placement) -> str:
    """The node label ``rule`` looks at."""
    return HOSTNAME_LABEL if rule.label is None else rule.label


def confine(pod: Any, placement: Sequence[Placement]) -> None:
    """Add ``placement`` to ``pod`` (a ``V1Pod``); ``Unsupported`` for a rule a pod can't
    carry or that can never hold here."""
    if not placement:
        return
    from kubernetes import client as k

    selector = dict(pod.spec.node_selector or {})
    excluded = []
    for rule in placement:
        key = node_label(rule)
        if not valid_label(key, rule.value):
            raise Unsupported(
                f"Kubernetes can't place a kernel by {rule}: {key}={rule.value} is not a node "
                "label (a name and a value of at most 63 letters, digits, '-', '_' or '.', "
                "the name with an optional DNS prefix and '/'). Use a label your nodes carry."
            )
        if not rule.equal:
            excluded.append(
                k.V1NodeSelectorRequirement(key=key, operator="NotIn", values=[rule.value])
            )
        elif selector.setdefault(key, rule.value) != rule.value:
            raise Unsupported(
                f"Placement {rule} can never hold: kernel pods here run only on nodes with "
                f"{key}={selector[key]} (the admin's NBC_K8S_NODE_SELECTOR or pod template, "
                "or another of your rules). Change or remove the rule."
            )
    pod.spec.node_selector = selector or None
    if not excluded:
        return
    affinity = pod.spec.affinity or k.V1Affinity()
    nodes = affinity.node_affinity or k.V1NodeAffinity()
    required = nodes.required_during_scheduling_ignored_during_execution or k.V1NodeSelector(
        node_selector_terms=[]
    )
    terms = required.node_selector_terms or [k.V1NodeSelectorTerm()]
    for term in terms:  # a pod may go where any term holds: each gets every rule
        term.match_expressions = [*(term.match_expressions or ()), *excluded]
    required.node_selector_terms = terms
    nodes.required_during_scheduling_ignored_during_execution = required
    affinity.node_affinity = nodes
    pod.spec.affinity = affinity
