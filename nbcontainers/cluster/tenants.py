"""Who gets a kernel namespace: one per user, or one per team, as the admin chooses
(``nbcontainers k8s manifests --per user|team``). Each tenant has its kernel namespace and
the ServiceAccount its members' notebook pods run as, whose rights hold only there.

User and team names become Kubernetes names here: lower case, ``-`` for anything else, and a
hash of the real name when that changed it, so that two names never share a namespace.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import ConfigError

__all__ = ["PER", "RESERVED_NAMESPACES", "Tenant", "kube_name", "tenants"]

PER = ("user", "team")
# Namespaces a tenant's may never be: the cluster's own.
RESERVED_NAMESPACES = frozenset({"default", "kube-system", "kube-public", "kube-node-lease"})
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@dataclass(frozen=True)
class Tenant:
    """A user or team: its name, who belongs, its kernel namespace and notebook account."""

    name: str
    members: tuple[str, ...]
    namespace: str
    account: str


def kube_name(name: str, limit: int = 40) -> str:
    """``name`` as part of a DNS label: itself when it is one already, else a cleaned-up
    form with 8 hex digits of its hash (``Alice`` and ``alice`` stay apart)."""
    if _DNS_LABEL.match(name) and len(name) <= limit:
        return name
    cleaned = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[: limit - 9].strip("-")
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{cleaned}-{digest}" if cleaned else f"x{digest}"


def _checked_names(names: tuple[str, ...], what: str) -> None:
    for name in names:
        if not name or name != name.strip() or any(ord(ch) < 32 for ch in name):
            raise ConfigError(
                f"{what} name {name!r} is empty or has spaces or control "
                "characters at its ends: give the name the hub knows the user by."
            )


def tenants(
    per: str,
    users: tuple[str, ...],
    teams: Mapping[str, tuple[str, ...]],
    hub_namespace: str,
    namespace_prefix: str,
    account_prefix: str,
) -> list[Tenant]:
    """The tenants the admin named, checked: every user in at most one team, every
    namespace a valid name that is neither the hub's nor one of the cluster's own."""
    if per not in PER:
        raise ConfigError(f"--per {per!r}: choose 'user' (a namespace each) or 'team'.")
    groups: dict[str, tuple[str, ...]]
    if per == "user":
        if teams:
            raise ConfigError("--team goes with --per team; with --per user name --user.")
        if not users:
            raise ConfigError(
                "Name the hub users who may start kernels: --user NAME (repeat it). Each gets "
                "a kernel namespace; a user left out gets no rights at all."
            )
        _checked_names(users, "user")
        groups = {user: (user,) for user in dict.fromkeys(users)}
    else:
        if users:
            raise ConfigError("--user goes with --per user; with --per team give --team.")
        if not teams:
            raise ConfigError("Name the teams: --team TEAM=user1,user2 (repeat it).")
        seen: dict[str, str] = {}
        for team, members in teams.items():
            _checked_names((team, *members), "team or user")
            if not members:
                raise ConfigError(f"--team {team}: name its members, e.g. {team}=alice,bob.")
            for member in members:
                if member in seen and seen[member] != team:
                    raise ConfigError(
                        f"{member!r} is in teams {seen[member]!r} and {team!r}: a notebook pod "
                        "runs as one account, so a user belongs to one team."
                    )
                seen[member] = team
        groups = {team: tuple(dict.fromkeys(members)) for team, members in teams.items()}
    found: list[Tenant] = []
    by_namespace: dict[str, str] = {}
    for name, members in groups.items():
        slug = kube_name(name)
        namespace, account = f"{namespace_prefix}{slug}", f"{account_prefix}-{slug}"
        if not _DNS_LABEL.match(namespace) or len(namespace) > 63:
            raise ConfigError(
                f"Kernel namespace {namespace!r} (for {per} {name!r}) is not a valid "
                "Kubernetes name: use a --namespace-prefix of lower-case letters, digits, '-'."
            )
        if namespace == hub_namespace or namespace in RESERVED_NAMESPACES:
            raise ConfigError(
                f"The kernel namespace of {per} {name!r} would be {namespace!r}, the hub's or "
                "the cluster's own: kernels get a namespace of their own. Change "
                "--namespace-prefix."
            )
        if namespace in by_namespace:
            raise ConfigError(
                f"{per.title()}s {by_namespace[namespace]!r} and {name!r} map to one "
                f"namespace, {namespace!r}: rename one."
            )
        by_namespace[namespace] = name
        found.append(Tenant(name, members, namespace, account))
    return found
