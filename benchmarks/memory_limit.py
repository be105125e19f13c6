"""Run a benchmark child inside a memory cgroup: does a variant fit in a given amount of memory?

Peak RSS overstates what a backend needs when it maps its weight files: mapped file pages are clean page cache,
counted in RSS, but the kernel reclaims them under pressure (and reads them again if they are touched), while
anonymous memory can only be swapped (this limit leaves no swap). A memory cgroup charges both and reclaims the
first before it kills for the second, so "generates a clip under an N MB limit, at the same speed" is the
figure an edge deployment needs. The cgroup is made below this process's own (cgroup v2, or v1's memory
controller), which needs write access there (root in a container, or a delegated subtree); Linux only.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from ..runtime.errors import InputError

CGROUP_ROOT = Path("/sys/fs/cgroup")


def evict_page_cache(folder: Path) -> None:
    """Drop the files under `folder` from the page cache (clean pages not mapped elsewhere), so a child in a fresh
    cgroup is charged for reading or mapping them: pages cached earlier stay charged to whoever read them first,
    and a limit would never see them."""
    for path in (p for p in Path(folder).rglob("*") if p.is_file()):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fdatasync(fd)  # dirty pages (a file just exported) are not dropped until written back
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def _own_cgroup(root: Path) -> tuple[Path, int] | None:
    """This process's memory cgroup folder and its cgroup version, if a writable one is mounted."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            folder, version = root / "memory" / path.lstrip("/"), 1
        elif controllers == "" and (root / "cgroup.controllers").is_file():
            folder, version = root / path.lstrip("/"), 2
            if "memory" not in (root / "cgroup.controllers").read_text().split():
                continue
        else:
            continue
        if folder.is_dir() and os.access(folder, os.W_OK):
            return folder, version
    return None


class MemoryLimit:
    """A fresh memory cgroup with `limit_mb` and no swap, for commands started with `wrap()`. Use
    `with MemoryLimit(n) as limit:` around the child's whole life and call `report()` before leaving it."""

    def __init__(self, limit_mb: int, root: Path = CGROUP_ROOT):
        found = _own_cgroup(root)
        if found is None:
            raise InputError("--memory-limit-mb needs a writable memory cgroup (Linux cgroup v2, or v1's memory "
                             f"controller, under {root}; as root or in a delegated subtree); none found here")
        parent, self.version = found
        self.limit_mb = int(limit_mb)
        self.folder = parent / f"tango-rt-bench-{os.getpid()}-{id(self)}"

    def __enter__(self) -> MemoryLimit:
        self.folder.mkdir()
        limit = str(self.limit_mb * 2**20)
        if self.version == 2:
            self._write("memory.max", limit)
            self._write("memory.swap.max", "0", optional=True)
        else:
            self._write("memory.limit_in_bytes", limit)
            self._write("memory.memsw.limit_in_bytes", limit, optional=True)  # memory + swap: no swap
        return self

    def __exit__(self, *exc) -> None:
        with contextlib.suppress(OSError):  # fails while a process is still inside; the kernel keeps it until then
            self.folder.rmdir()

    def _write(self, name: str, value: str, optional: bool = False) -> None:
        try:
            (self.folder / name).write_text(value)
        except OSError:
            if not optional:
                raise

    def wrap(self, command: list[str]) -> list[str]:
        """`command` started inside the cgroup: a shell joins it, then execs the command (so nothing runs
        outside the limit, and no preexec_fn runs in a threaded parent)."""
        return ["sh", "-c", 'echo $$ > "$0" && exec "$@"', str(self.folder / "cgroup.procs"), *command]

    def report(self) -> dict:
        """The limit, the cgroup's peak charge (memory + page cache) and out-of-memory kills so far."""
        if self.version == 2:
            peak = self._read_int("memory.peak")
            events = self._read_events("memory.events")
        else:
            peak = self._read_int("memory.max_usage_in_bytes")
            events = self._read_events("memory.oom_control")
        return {"limit_mb": self.limit_mb, "cgroup_version": self.version,
                "cgroup_peak_mb": None if peak is None else peak / 2**20, "oom_kills": events.get("oom_kill", 0)}

    def _read_int(self, name: str) -> int | None:
        try:
            return int((self.folder / name).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _read_events(self, name: str) -> dict[str, int]:
        try:
            pairs = (line.split() for line in (self.folder / name).read_text().splitlines())
            return {key: int(value) for key, value in pairs}
        except (OSError, ValueError):
            return {}
