"""Reading processes from /proc for the benches: trees, memory, CPU."""

from __future__ import annotations

import os
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def process_tree(roots: list[int]) -> list[int]:
    """`roots` and all their descendants, from the ppid field of /proc/<pid>/stat."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], list(roots)
    seen: set[int] = set()
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.add(pid)
            found.append(pid)
            todo.extend(children.get(pid, []))
    return found


def pss_bytes(pids: set[int] | list[int]) -> int:
    """Sum of Pss over `pids` (the kB line of /proc/<pid>/smaps_rollup)."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
                    break
        except OSError:
            continue
    return total


def tree_cpu_seconds(roots: list[int]) -> float:
    """CPU of the live processes under `roots`, each with its reaped children (utime,
    stime, cutime, cstime): run workers that ended are counted in their parent's."""
    total = 0
    for pid in process_tree(roots):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(v) for v in fields[11:15])
    return total / TICK
