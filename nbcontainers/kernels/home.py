"""A kernel's identity and home: who it is inside (a passwd and group entry, USER and
LOGNAME) and where ``~`` is (a folder that outlives the kernel), decided for any uid.

:func:`plan_home` decides it from the server's identity and environment, the kernel's
uid:gid, and the mounts the kernel already gets; it writes nothing. :meth:`KernelHome.prepare`
makes on the host what the decision mounts: the home folder (0700, the kernel user's), the
per-image Python user base in it with its ``site-packages`` folder (so ``site`` puts it on
``sys.path`` when the interpreter starts, and ``%pip install`` imports at once; a ``.pth``
line there puts its ``bin`` on PATH, so the commands it installs run), and the
generated ``passwd``/``group`` files mounted read-only over the image's.

Where ``~`` is:
- the user's own home folder, when a writable mount the kernel already gets holds it (the
  workspace root is the home, as under JupyterHub): same path, same files as on the host;
- else a folder of the user's data dir (``$XDG_DATA_HOME/nbcontainers/home``, by default
  ``~/.local/share/nbcontainers/home``) mounted at the home's path, so paths written with
  ``~`` mean the same path inside and out, and the files survive the kernel. A root server
  starting kernels as another uid keeps that uid's folder in its own data dir
  (``homes/<uid>``), made without following links the kernel's user could plant.
Pip's user installs go to ``~/.local/share/nbcontainers/python/<image>`` (PYTHONUSERBASE),
not to ``~/.local``: the host's own user site (built for another Python and other
libraries) never shadows the image's packages, and two images never share installs.
"""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import re
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..catalog.entries import CatalogImage
from ..errors import ConfigError
from ..runtimes.base import EngineFacts, Mount
from .identity import Host

__all__ = ["KernelHome", "data_dir", "home_for", "kernel_name", "plan_home"]

USERBASE = ".local/share/nbcontainers/python"  # under HOME: one Python user base per image
# Minor versions made when the image does not say which Python it runs (user images: "3").
_ANY_PYTHON = tuple(f"3.{minor}" for minor in range(8, 15))
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}")
# Homes that are no home: never mounted over, never the kernel's HOME.
_NO_HOME = frozenset({"", "/", "/nonexistent", "/root/nonexistent", "/dev/null"})
# A folder of the image's own never gets a home mounted over it (HOME=/tmp in some CI jobs):
# such a home is mounted at /home/<name> instead.
# fmt: off
_SYSTEM = frozenset({
    "/tmp", "/var/tmp", "/home", "/opt", "/srv", "/mnt", "/media", "/usr", "/usr/local", "/etc",
    "/var", "/run", "/bin", "/sbin", "/lib", "/boot",
})
# fmt: on
# The image's own accounts a kernel can't do without; the rest of the image's passwd is not
# known on the host (reading it would cost an engine round trip per start).
_BASE_PASSWD = (
    "root:x:0:0:root:/root:/bin/sh",
    "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin",
)
_BASE_GROUP = ("root:x:0:", "nogroup:x:65534:")
# A .pth line in each user site: Python runs a line that starts with "import" when it starts,
# so every interpreter of the kernel's puts $PYTHONUSERBASE/bin (where `%pip install` puts a
# package's commands) first on PATH, and `!command` and subprocesses find them.
SCRIPTS_PTH = "nbcontainers-scripts.pth"
_SCRIPTS_LINE = (
    'import os; b = os.environ.get("PYTHONUSERBASE"); b and os.environ.__setitem__("PATH", '
    'os.pathsep.join(dict.fromkeys([os.path.join(b, "bin")] + '
    '[p for p in os.environ.get("PATH", "").split(os.pathsep) if p])))\n'
)


@dataclass(frozen=True)
class KernelHome:
    """Who a kernel is and where its ``~`` is; the host side made by :meth:`prepare`."""

    name: str  # USER, LOGNAME and the passwd name
    uid: int  # as the kernel runs inside
    gid: int
    path: str  # HOME inside the container
    host_path: str  # the host folder that is HOME
    mounted: bool  # True: mounted at ``path`` by its own mount; False: a workspace mount holds it
    userbase: str  # PYTHONUSERBASE inside the container
    pythons: tuple[str, ...]  # "3.11": the site-packages folders made before start
    owner: tuple[int, int] | None  # uid:gid to give the folders made (a root server's)
    passwd: str = ""  # the generated files' text; empty: the image's own (uid 0)
    group: str = ""
    identity_dir: str = ""  # host folder the two files are written to

    def env(self) -> dict[str, str]:
        return {
            "HOME": self.path,
            "USER": self.name,
            "LOGNAME": self.name,
            "PYTHONUSERBASE": self.userbase,
        }

    def mounts(self) -> list[Mount]:
        mounts = [Mount(self.host_path, self.path, read_only=False)] if self.mounted else []
        if self.passwd:
            mounts.append(Mount(os.path.join(self.identity_dir, "passwd"), "/etc/passwd"))
            mounts.append(Mount(os.path.join(self.identity_dir, "group"), "/etc/group"))
        return mounts

    def site_packages(self) -> list[str]:
        """The user site folders inside the container, one per Python that may run."""
        return [f"{self.userbase}/lib/python{v}/site-packages" for v in self.pythons]

    def prepare(self) -> None:
        """Make the home folder, the user site folders and the identity files on the host
        (idempotent); a ConfigError naming the folder when it can't."""
        try:
            if self.mounted:
                os.makedirs(os.path.dirname(self.host_path), mode=0o700, exist_ok=True)
                _make_dirs(os.path.dirname(self.host_path), [os.path.basename(self.host_path)],
                           self.owner, mode=0o700)  # fmt: skip
            for site in self.site_packages():
                parts = site[len(self.path) :].strip("/").split("/")
                folder = _open_dirs(self.host_path, parts, self.owner, mode=0o755)
                try:  # %pip's scripts on PATH (the image's PATH is only known inside)
                    _write_in(folder, SCRIPTS_PTH, _SCRIPTS_LINE, self.owner)
                finally:
                    os.close(folder)
            if self.passwd:
                os.makedirs(self.identity_dir, mode=0o755, exist_ok=True)
                _write(os.path.join(self.identity_dir, "passwd"), self.passwd)
                _write(os.path.join(self.identity_dir, "group"), self.group)
        except OSError as exc:
            raise ConfigError(
                f"Cannot make the kernel's home folder {self.host_path} ({exc.strerror or exc}"
                f"{': ' + exc.filename if exc.filename else ''}). Make it writable, or set "
                "XDG_DATA_HOME to a folder you can write."
            ) from None


def home_for(
    user: str,
    host: Host,
    server_env: Mapping[str, str],
    image: CatalogImage,
    mounts: Sequence[Mount],
    facts: EngineFacts,
) -> KernelHome | None:
    """:func:`plan_home` for a kernel running as ``user`` (uid:gid) of ``image``, started by
    ``host`` on the engine of ``facts``; None on a cluster engine, whose nodes don't have
    this host's folders (HOME stays the scratch tmpfs there)."""
    if facts.remote:
        return None
    uid, gid = (int(part) for part in user.split(":"))
    return plan_home(
        uid, gid, host.uid, server_env, host.owner, image.name, image.python, mounts,
        rootless=facts.rootless,
    )  # fmt: skip


def plan_home(
    uid: int,
    gid: int,
    server_uid: int,
    server_env: Mapping[str, str],
    owner: str,
    image: str,
    python: str,
    mounts: Sequence[Mount],
    rootless: bool,
) -> KernelHome | None:
    """Where ``~`` is and who the kernel is, for a kernel running as ``uid``:``gid`` inside
    (0:0 on a rootless engine, where that is the server's own user) of ``image`` (its
    catalog name; ``python`` its version, "3.11" or just "3") next to ``mounts``; None when
    the server has no data dir to keep a home in (HOME stays the scratch tmpfs)."""
    own = rootless or uid == server_uid  # the kernel is the server's user
    entry = _passwd(server_uid if rootless else uid)
    name = kernel_name(uid, entry, server_env if own else {}, owner if own else "")
    # The server's own user: its $HOME first, as the host's expanduser("~") reads it (a
    # spawner may set it); another uid's home: the host's passwd only.
    home = server_env.get("HOME", "") if own else ""
    if not os.path.isabs(home) and entry is not None:
        home = entry.pw_dir
    home = os.path.normpath(home) if os.path.isabs(home) else ""
    if home in _NO_HOME:
        home = ""
    data = data_dir(server_env, server_uid)
    holder = _holding_mount(home, mounts) if home and own else None
    if holder is not None:
        path, host_path, mounted = home, holder.source + home[len(holder.target) :], False
    elif data:
        path = home if home and home not in _SYSTEM else f"/home/{name}"
        host_path = os.path.join(data, "home" if own else f"homes/{uid}")
        mounted = True
    else:
        return None
    root_server = not rootless and server_uid == 0 and uid != 0
    versions = (python,) if re.fullmatch(r"3\.\d+", python) else _ANY_PYTHON
    passwd = group = identity = ""
    if uid != 0:  # root is in every image's passwd
        passwd = "\n".join((*_BASE_PASSWD, f"{name}:x:{uid}:{gid}:{name}:{path}:/bin/sh")) + "\n"
        group = "\n".join((*_BASE_GROUP, f"{_group_name(gid, name)}:x:{gid}:")) + "\n"
        digest = hashlib.sha256((passwd + group).encode()).hexdigest()[:16]
        # Named by content: a pooled kernel and a cold one mount the very same files.
        store = data or os.path.join(host_path, ".local", "share", "nbcontainers")
        identity = os.path.join(store, "identity", digest)
    return KernelHome(
        name=name,
        uid=uid,
        gid=gid,
        path=path,
        host_path=host_path,
        mounted=mounted,
        userbase=f"{path}/{USERBASE}/{image}",
        pythons=versions,
        owner=(uid, gid) if root_server else None,
        passwd=passwd,
        group=group,
        identity_dir=identity,
    )


def kernel_name(
    uid: int, entry: pwd.struct_passwd | None, env: Mapping[str, str], owner: str = ""
) -> str:
    """The kernel user's name: the host's passwd name for the uid, else JupyterHub's name
    for the server's user, else ``u<uid>``; only names a passwd file can hold."""
    for candidate in (entry.pw_name if entry else "", env.get("JUPYTERHUB_USER", ""), owner):
        if _NAME.fullmatch(candidate) and not candidate.isdigit():
            return candidate
    return f"u{uid}"


def data_dir(env: Mapping[str, str], uid: int) -> str:
    """The server user's nbcontainers data folder, from its environment ("" if none)."""
    base = env.get("XDG_DATA_HOME", "")
    if not os.path.isabs(base):
        home = env.get("HOME", "")
        if not os.path.isabs(home):
            entry = _passwd(uid)
            home = entry.pw_dir if entry else ""
        if not os.path.isabs(home) or os.path.normpath(home) in _NO_HOME:
            return ""
        base = os.path.join(home, ".local", "share")
    return os.path.join(os.path.normpath(base), "nbcontainers")


def _passwd(uid: int) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwuid(uid)
    except KeyError:
        return None


def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return ""


def _group_name(gid: int, name: str) -> str:
    found = _group(gid)
    return found if _NAME.fullmatch(found) else name


def _holding_mount(path: str, mounts: Sequence[Mount]) -> Mount | None:
    """The writable mount whose target holds ``path`` (the deepest), if any."""
    holders = [
        m for m in mounts if not m.read_only and (path + "/").startswith(m.target.rstrip("/") + "/")
    ]
    return max(holders, key=lambda m: len(m.target), default=None)


def _make_dirs(base: str, parts: Sequence[str], owner: tuple[int, int] | None, mode: int) -> None:
    """``base/parts...``, each made if missing and given to ``owner``, never through a link:
    below ``base`` the kernel's user writes what it likes, and a root server must not make
    (or hand over) folders wherever that user's links point."""
    os.close(_open_dirs(base, parts, owner, mode))


def _open_dirs(base: str, parts: Sequence[str], owner: tuple[int, int] | None, mode: int) -> int:
    """:func:`_make_dirs`, and the last folder's descriptor (the caller closes it)."""
    fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts:
            made = False
            try:
                os.mkdir(part, mode, dir_fd=fd)
                made = True
            except FileExistsError:
                pass
            child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = child
            if made and owner is not None:
                os.fchown(fd, *owner)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _write_in(folder: int, name: str, text: str, owner: tuple[int, int] | None) -> None:
    """Make ``name`` in the open ``folder`` hold ``text``, never through a link the kernel's
    user planted there (a root server writes in that user's folder): a new file is written
    beside it and renamed over it. What that user planted is never waited on (a FIFO is
    opened without blocking and replaced); a folder of that name is left, without the file."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=folder)
    except OSError:  # missing, or a link
        pass
    else:
        try:
            mode = os.fstat(fd).st_mode
            if stat.S_ISDIR(mode) or (stat.S_ISREG(mode) and os.read(fd, 1 << 16) == text.encode()):
                return
        finally:
            os.close(fd)
    temp = f".{name}.{os.urandom(8).hex()}"  # a name the user cannot have planted
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    fd = os.open(temp, flags, 0o644, dir_fd=folder)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
        if owner is not None:
            os.fchown(f.fileno(), *owner)
    os.replace(temp, name, src_dir_fd=folder, dst_dir_fd=folder)


def _write(path: str, text: str) -> None:
    """Replace ``path`` by ``text`` at once (a kernel starting meanwhile sees one or the other)."""
    try:
        with open(path, encoding="utf-8") as f:
            if f.read() == text:
                return
    except OSError:
        pass
    temp = f"{path}.{os.getpid()}"
    with open(temp, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(temp, 0o644)
    os.replace(temp, path)
