"""The Unix-domain-socket listener of `sim2real serve --uds PATH`: the socket file.

gRPC binds ``unix:PATH`` itself, but two things it does are wrong for a server whose
access control is the socket file's permissions: it first unlinks whatever socket is at
PATH, a live server's included (grpc core, ``grpc_unlink_if_unix_domain_socket``), and it
creates the file under the process umask, so it may be connectable by anyone until it is
chmod-ed. So before gRPC sees the path this module checks it (the folder exists, nothing
but a stale socket is there, the path fits ``sun_path``), removes a stale socket left by a
dead server, binds under an owner-only umask and then sets the requested mode; on
shutdown it removes the file, but only the one it created (same device and inode).

What it cannot close: the moment between the check and gRPC's bind, in which another
process that can write the folder could put something at PATH. The folder is the
deployer's (like the model repository): writable only by the server's user.
"""

from __future__ import annotations

import errno
import os
import re
import socket
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SUN_PATH_BYTES = 108
"""sizeof(struct sockaddr_un.sun_path) on Linux (unix(7)); the path and its terminating
NUL must fit, so a socket path has at most 107 bytes."""
MAX_SOCKET_PATH_BYTES = SUN_PATH_BYTES - 1
DEFAULT_MODE = "0660"
"""The server's user and group may connect (connecting to a Unix socket needs write
permission on the file), nobody else."""
BIND_UMASK = 0o177
"""Umask while gRPC creates the socket file: owner read/write only (0600) until the
requested mode is set, so no one else can connect in between."""
PROBE_TIMEOUT_S = 1.0
UNIX_PREFIXES = ("unix:", "unix-abstract:")
_MODE = re.compile(r"(0o?)?([0-7]{3})")


class SocketPathError(OSError):
    """The --uds path cannot be used; the message names the flag, the path and why."""


def parse_mode(text: str, field: str = "--uds-mode") -> int:
    """``"0660"``, ``"660"`` or ``"0o660"`` -> 0o660; ValueError naming ``field`` otherwise."""
    match = _MODE.fullmatch(text.strip())
    if match is None:
        raise ValueError(
            f"{field}: expected an octal file mode of three digits 0-7 such as 0660 or 0600, got {text!r}"
        )
    return int(match.group(2), 8)


def socket_path(path: Path | str, field: str = "--uds") -> Path:
    """The absolute path a ``--uds`` value binds, checked without touching the filesystem:
    a file path (not a gRPC address), short enough for ``sun_path``. ValueError otherwise."""
    text = os.fspath(path)
    if text.startswith(UNIX_PREFIXES):
        bare = text.split(":", 1)[1]
        raise ValueError(f"{field}: expected a file path, got the gRPC address {text!r} (use {field} {bare})")
    if not text.strip():
        raise ValueError(f"{field}: expected a file path, got an empty string")
    absolute = Path(text).absolute()
    size = len(os.fsencode(absolute))
    if size > MAX_SOCKET_PATH_BYTES:
        raise ValueError(
            f"{field} {absolute}: the path is {size} bytes, a Unix socket path may have at most "
            f"{MAX_SOCKET_PATH_BYTES} (sun_path holds {SUN_PATH_BYTES} with the terminating NUL); "
            "choose a shorter path, e.g. /run/sim2real/policy.sock"
        )
    return absolute


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a folder"), (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISFIFO, "a named pipe"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return name
    return "not a socket"


def prepare_socket_path(path: Path, field: str = "--uds") -> bool:
    """Make ``path`` free for gRPC to bind: its folder must exist; a stale socket (nothing
    listening: connecting is refused) is removed; anything else there is refused with
    SocketPathError. Returns whether a stale socket was removed."""
    parent = path.parent
    if not parent.exists():
        raise SocketPathError(
            f"{field} {path}: the folder {parent} does not exist (the server creates the socket file, "
            "not its folder)"
        )
    if not parent.is_dir():
        raise SocketPathError(f"{field} {path}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise SocketPathError(
            f"{field} {path}: the folder {parent} is not writable by this user (uid {os.geteuid()}), "
            "so the socket file cannot be created there"
        )
    try:
        # lstat: a symbolic link at PATH is refused as such, never followed.
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    if not stat.S_ISSOCK(info.st_mode):
        raise SocketPathError(
            f"{field} {path}: expected no file or a stale socket there, found {_kind(info.st_mode)}; "
            "refusing to replace it (remove it yourself, or choose another path)"
        )
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(PROBE_TIMEOUT_S)
        try:
            probe.connect(os.fspath(path))
        except ConnectionRefusedError:
            pass  # nothing listens: left by a server that died (SIGKILL, power loss)
        except OSError as err:
            raise SocketPathError(
                f"{field} {path}: a socket is there and probing it failed "
                f"({err.strerror or type(err).__name__}); refusing to replace it"
            ) from None
        else:
            raise SocketPathError(
                f"{field} {path}: another process is listening on this socket (a running server?); "
                "stop it or choose another path"
            )
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass  # removed meanwhile; the path is free either way
    return True


@contextmanager
def bind_umask() -> Iterator[None]:
    """Owner-only umask around gRPC's bind. The umask is process-wide: keep the block to
    the bind call (the server has no other thread creating files at start-up)."""
    previous = os.umask(BIND_UMASK)
    try:
        yield
    finally:
        os.umask(previous)


@dataclass(frozen=True)
class SocketFile:
    """The socket file this server created: removed on shutdown only if it is still that one."""

    path: Path
    device: int
    inode: int
    mode: int

    @classmethod
    def created(cls, path: Path, mode: int, field: str = "--uds") -> SocketFile:
        """Record the socket gRPC just bound at ``path`` and give it ``mode``."""
        info = os.lstat(path)
        if not stat.S_ISSOCK(info.st_mode):
            raise SocketPathError(f"{field} {path}: expected the socket gRPC bound, found {_kind(info.st_mode)}")
        os.chmod(path, mode)
        return cls(path, info.st_dev, info.st_ino, mode)

    def remove(self) -> bool:
        """Unlink the file if it is still the socket this server created; returns whether
        it did. (gRPC also unlinks it when it stops; then this finds nothing to do.)"""
        try:
            info = os.lstat(self.path)
        except FileNotFoundError:
            return False
        if (info.st_dev, info.st_ino) != (self.device, self.inode) or not stat.S_ISSOCK(info.st_mode):
            return False  # someone else's file now: not ours to delete
        try:
            os.unlink(self.path)
        except OSError as err:
            if err.errno != errno.ENOENT:
                raise
            return False
        return True
