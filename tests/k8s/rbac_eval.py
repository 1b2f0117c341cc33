"""A small RBAC evaluator for the attack tests: what a subject may do, given Roles,
ClusterRoles and their bindings, the way the API server's RBAC authorizer matches a request
(verbs, API groups, resources and subresources, resourceNames, wildcards), and then what it
can *become* through the well-known escalation paths:

- creating a pod (or any workload that makes pods) in a namespace lets it run as any
  ServiceAccount of that namespace and mount any Secret there;
- in a namespace whose Pod Security level is not ``baseline`` or ``restricted``, that pod can
  be privileged, share the host's namespaces or mount ``hostPath`` ``/``: root on the node,
  which ends with the kubelet's credentials (taken here as everything);
- ``pods/exec`` or ``pods/attach`` runs code in the pods that already run there, under their
  ServiceAccounts;
- reading Secrets reads the ServiceAccount tokens kept in them;
- ``serviceaccounts/token`` mints a token; ``impersonate`` acts as another subject;
- ``create rolebindings`` with ``bind``, or ``create/update roles`` with ``escalate``, grants
  anything in that namespace (the ClusterRole ``admin`` or ``cluster-admin`` bound there).

Conservative by design: where a path *may* exist (the pods that happen to run in a
namespace), it is taken to exist. Nothing here talks to a cluster.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

RBAC = "rbac.authorization.k8s.io"
# Resources whose create makes pods (and so chooses their ServiceAccount and volumes).
WORKLOADS = (
    ("", "pods"),
    ("", "replicationcontrollers"),
    ("apps", "deployments"),
    ("apps", "replicasets"),
    ("apps", "statefulsets"),
    ("apps", "daemonsets"),
    ("batch", "jobs"),
    ("batch", "cronjobs"),
)
PSS_SAFE = ("baseline", "restricted")
# A request about some object, whichever: a rule limited by resourceNames matches it, since
# the objects it names (the "admin" ClusterRole, the hub's pod) exist.
ANY: Any = object()


@dataclass(frozen=True)
class Account:
    """A ServiceAccount, as RBAC sees it: a user name and its groups."""

    namespace: str
    name: str

    @property
    def user(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.name}"

    @property
    def groups(self) -> frozenset[str]:
        return frozenset(
            {
                "system:serviceaccounts",
                f"system:serviceaccounts:{self.namespace}",
                "system:authenticated",
            }
        )


def rule_matches(
    rule: Mapping[str, Any], verb: str, group: str, resource: str, name: str | None
) -> bool:
    """The RBAC authorizer's match of one PolicyRule against one resource request."""
    groups, resources = rule.get("apiGroups") or [], rule.get("resources") or []
    verbs, names = rule.get("verbs") or [], rule.get("resourceNames") or []
    if not ("*" in verbs or verb in verbs):
        return False
    if not ("*" in groups or group in groups):
        return False
    sub = resource.partition("/")[2]
    if not ("*" in resources or resource in resources or (sub and f"*/{sub}" in resources)):
        return False
    # resourceNames narrow a rule to named objects; a request without a name (create, list,
    # watch, deletecollection) is not matched by such a rule.
    return not names or name is ANY or (name is not None and name in names)


@dataclass
class Cluster:
    """The RBAC objects and namespaces of a cluster, from manifests (plain dicts)."""

    objects: Iterable[Mapping[str, Any]]
    roles: dict[tuple[str, str], list[Mapping[str, Any]]] = field(default_factory=dict)
    cluster_roles: dict[str, list[Mapping[str, Any]]] = field(default_factory=dict)
    bindings: list[Mapping[str, Any]] = field(default_factory=list)
    namespaces: dict[str, dict[str, str]] = field(default_factory=dict)
    accounts: set[Account] = field(default_factory=set)

    def __post_init__(self) -> None:
        for obj in self.objects:
            kind, meta = obj["kind"], obj.get("metadata") or {}
            ns = meta.get("namespace", "")
            if ns:
                self.namespaces.setdefault(ns, {})
            if kind == "Role":
                self.roles[(ns, meta["name"])] = list(obj.get("rules") or [])
            elif kind == "ClusterRole":
                self.cluster_roles[meta["name"]] = list(obj.get("rules") or [])
            elif kind in ("RoleBinding", "ClusterRoleBinding"):
                self.bindings.append(obj)
            elif kind == "Namespace":
                self.namespaces[meta["name"]] = dict(meta.get("labels") or {})
            elif kind == "ServiceAccount":
                self.accounts.add(Account(ns, meta["name"]))
        for ns in self.namespaces:  # every namespace has its "default" ServiceAccount
            self.accounts.add(Account(ns, "default"))

    # -- direct rights ----------------------------------------------------------------------

    def _binds(self, binding: Mapping[str, Any], who: Account) -> bool:
        for subject in binding.get("subjects") or ():
            kind, name = subject.get("kind"), subject.get("name")
            if kind == "ServiceAccount" and (subject.get("namespace", ""), name) == (
                who.namespace,
                who.name,
            ):
                return True
            if kind == "User" and name == who.user:
                return True
            if kind == "Group" and name in who.groups:
                return True
        return False

    def _rules(self, binding: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        ref = binding["roleRef"]
        if ref["kind"] == "ClusterRole":
            return self.cluster_roles.get(ref["name"], [])
        return self.roles.get((binding["metadata"].get("namespace", ""), ref["name"]), [])

    def direct(
        self,
        who: Account,
        verb: str,
        resource: str,
        namespace: str | None,
        group: str = "",
        name: Any = None,
    ) -> bool:
        """What RBAC alone answers (a SubjectAccessReview): ``namespace`` None asks about a
        cluster-scoped resource (or every namespace at once)."""
        for binding in self.bindings:
            if not self._binds(binding, who):
                continue
            if binding["kind"] == "RoleBinding" and (
                namespace is None or binding["metadata"].get("namespace") != namespace
            ):
                continue
            if any(rule_matches(r, verb, group, resource, name) for r in self._rules(binding)):
                return True
        return False

    def accounts_in(self, namespace: str) -> set[Account]:
        return {a for a in self.accounts if a.namespace == namespace}

    def pss_level(self, namespace: str) -> str:
        return self.namespaces.get(namespace, {}).get(
            "pod-security.kubernetes.io/enforce", "privileged"
        )

    # -- what a subject can become -----------------------------------------------------------

    def reach(self, start: Account) -> Reach:
        """Everything ``start`` can do, following the escalation paths to a fixed point."""
        reach = Reach(self, {start})
        changed = True
        while changed and not reach.node_root:
            before = (set(reach.accounts), set(reach.admin_of), set(reach.secrets_of))
            for ns in list(self.namespaces):
                self._escalate(reach, ns)
            if any(
                reach.direct_any(verb, res, None, group, ANY)
                for verb, res, group in (
                    ("impersonate", "users", ""),
                    ("impersonate", "groups", ""),
                    ("bind", "clusterroles", RBAC),
                    ("escalate", "clusterroles", RBAC),
                    ("create", "nodes/proxy", ""),
                    ("get", "nodes/proxy", ""),
                )
            ):
                reach.node_root = True
            after = (set(reach.accounts), set(reach.admin_of), set(reach.secrets_of))
            changed = before != after
        return reach

    def _escalate(self, reach: Reach, ns: str) -> None:
        def can(verb: str, resource: str, group: str = "") -> bool:
            return reach.can(verb, resource, ns, group, ANY)

        accounts = self.accounts_in(ns)
        # create has no name: a rule with resourceNames never allows it.
        if any(reach.can("create", res, ns, group) for group, res in WORKLOADS):
            reach.accounts |= accounts  # spec.serviceAccountName: any account of ns
            reach.secrets_of.add(ns)  # a secret volume: any Secret of ns
            reach.pod_creators.add(ns)
            if self.pss_level(ns) not in PSS_SAFE:
                reach.node_root = True  # privileged, hostPID, hostPath "/": the node
        if any(can(v, r) for v, r in (("create", "pods/exec"), ("get", "pods/exec"))) or any(
            can(v, "pods/attach") for v in ("create", "get")
        ):
            reach.accounts |= accounts  # the running pods' accounts
            reach.exec_in.add(ns)
        if can("get", "secrets") or can("list", "secrets"):
            reach.secrets_of.add(ns)
            reach.accounts |= accounts  # their token Secrets
        if can("create", "serviceaccounts/token") or can("impersonate", "serviceaccounts"):
            reach.accounts |= accounts
        binds = can("bind", "roles", RBAC) or can("bind", "clusterroles", RBAC)
        escalates = can("escalate", "roles", RBAC)
        if (
            reach.can("create", "rolebindings", ns, RBAC) or can("update", "rolebindings", RBAC)
        ) and (binds or escalates):
            reach.admin_of.add(ns)
        if escalates and (can("create", "roles", RBAC) or can("update", "roles", RBAC)):
            reach.admin_of.add(ns)


@dataclass
class Reach:
    """What a subject can do once every escalation path it has is followed."""

    cluster: Cluster
    accounts: set[Account]
    admin_of: set[str] = field(default_factory=set)  # namespaces where it can grant anything
    secrets_of: set[str] = field(default_factory=set)  # namespaces whose Secrets it reads
    pod_creators: set[str] = field(default_factory=set)  # namespaces where it makes pods
    exec_in: set[str] = field(default_factory=set)  # namespaces where it runs code in pods
    node_root: bool = False

    def direct_any(
        self, verb: str, resource: str, ns: str | None, group: str = "", name: Any = None
    ) -> bool:
        return any(self.cluster.direct(a, verb, resource, ns, group, name) for a in self.accounts)

    def can(
        self, verb: str, resource: str, ns: str | None, group: str = "", name: Any = None
    ) -> bool:
        if self.node_root or (ns is not None and ns in self.admin_of):
            return True
        return self.direct_any(verb, resource, ns, group, name)

    def anything_in(self, ns: str) -> list[str]:
        """Every right it holds in ``ns`` (empty: none at all)."""
        found = []
        if self.node_root:
            return ["root on a node: everything"]
        if ns in self.admin_of:
            found.append("grants itself anything (rolebindings with bind/escalate)")
        for what, where in (
            ("reads Secrets", self.secrets_of),
            ("creates pods", self.pod_creators),
            ("execs into pods", self.exec_in),
        ):
            if ns in where:
                found.append(what)
        for account in self.accounts:
            for binding in self.cluster.bindings:
                applies = binding["kind"] == "ClusterRoleBinding" or (
                    binding["metadata"].get("namespace") == ns
                )
                if applies and self.cluster._binds(binding, account):
                    found.append(f"{account.user} is bound by {binding['metadata']['name']}")
        return found
