"""This process's identity, and whether another process is gone.

Outbox claims and heartbeat rows carry the identity ``host:pid:nonce``. The host is the
host name and the pid namespace (containers sharing a host name still differ), so a pid
is only ever judged where it means something. The nonce tells a restarted daemon from
its previous life even when it gets the same pid (pid 1 in a container), so a row
claimed by a process that crashed on this host is recovered at once; a claim from
another host is judged by that process's heartbeat instead (core.delivery.claims).
"""

from __future__ import annotations

import os
import secrets
import socket


def _pid_namespace() -> str:
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:  # not Linux: the host name alone
        return "-"


HOST = f"{socket.gethostname()[:64]}/{_pid_namespace()}"
THIS_PROCESS = f"{HOST}:{os.getpid()}:{secrets.token_hex(4)}"


def gone_from_this_host(identity: str | None) -> bool:
    """True when `identity` is a process of this host that no longer runs."""
    if not identity:
        return False
    parts = identity.rsplit(":", 2)
    if len(parts) != 3 or parts[0] != HOST or not parts[1].isdigit():
        return False
    pid = int(parts[1])
    if identity == THIS_PROCESS:
        return False
    if pid == os.getpid():
        return True  # our pid, another nonce: this process's previous life
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, someone else's
    return False  # alive (or a reused pid: then the heartbeat or the lease decides)
