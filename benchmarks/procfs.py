"""Process facts read from Linux's /proc: child processes, CPU time and resident memory."""

from __future__ import annotations

import os
from pathlib import Path

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def child_pids() -> set[int]:
    """Return the ids of this process's children, whichever thread started them."""
    pids: set[int] = set()
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        try:
            pids.update(int(pid) for pid in (task / "children").read_text().split())
        except FileNotFoundError:  # the thread ended while we read
            continue
    return pids


def cpu_seconds(pid: int) -> float:
    """Return the user and system CPU time `pid` has used, in seconds."""
    # Fields after the command name, which may contain spaces, so split after ")".
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    user_ticks, system_ticks = int(fields[11]), int(fields[12])
    return (user_ticks + system_ticks) / _CLOCK_TICKS


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])  # "VmRSS:    123456 kB"
    raise RuntimeError(f"/proc/{pid}/status has no {field} line")


def rss_kib(pid: int) -> int:
    """Return the resident set size of `pid` now, in KiB."""
    return _status_kib(pid, "VmRSS")


def peak_rss_kib(pid: int) -> int:
    """Return the largest resident set size `pid` has had, in KiB."""
    return _status_kib(pid, "VmHWM")


def upstream_sockets(pid: int, remote_port: int) -> set[int]:
    """Return the inodes of `pid`'s IPv4 TCP sockets connected to `remote_port` on any host."""
    owned = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except FileNotFoundError:  # closed while we read
            continue
        if target.startswith("socket:["):
            owned.add(int(target[len("socket:[") : -1]))

    connected = set()
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote, inode = fields[2], int(fields[9])  # remote as "0100007F:1F90", hexadecimal
        if inode in owned and int(remote.split(":")[1], 16) == remote_port:
            connected.add(inode)
    return connected
