"""`tango-rt bench --memory-limit-mb`: the cgroup it runs variants in kills for anonymous memory over the limit
and reclaims mapped file pages instead (the claim the OpenVINO memory figures rest on), and says clearly when
there is no cgroup to use."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tango_rt.benchmarks.memory_limit import CGROUP_ROOT, MemoryLimit, _own_cgroup, evict_page_cache
from tango_rt.runtime.errors import InputError

LIMIT_MB = 200
needs_cgroup = pytest.mark.skipif(_own_cgroup(CGROUP_ROOT) is None,
                                  reason="no writable memory cgroup on this machine (needs root or delegation)")


def _run_limited(code: str) -> tuple[int, dict]:
    with MemoryLimit(LIMIT_MB) as limit:
        result = subprocess.run(limit.wrap([sys.executable, "-c", code]), capture_output=True, text=True,
                                timeout=120)
        return result.returncode, limit.report()


@needs_cgroup
def test_anonymous_memory_over_the_limit_is_killed():
    code, report = _run_limited(f"block = bytearray({2 * LIMIT_MB} * 2**20); print(len(block))")
    assert code != 0 and report["oom_kills"] >= 1 and report["limit_mb"] == LIMIT_MB


@needs_cgroup
def test_mapped_file_pages_over_the_limit_are_reclaimed(tmp_path):
    """Every page of a file twice the limit is mapped and read: page cache, reclaimed at the limit, no kill."""
    path = tmp_path / "weights.bin"
    with open(path, "wb") as handle:
        handle.truncate(2 * LIMIT_MB * 2**20)
    code, report = _run_limited(f"""
import mmap
with open({str(path)!r}, "rb") as handle:
    view = mmap.mmap(handle.fileno(), 0, prot=mmap.PROT_READ)
    touched = sum(view[i] == 0 for i in range(0, len(view), mmap.PAGESIZE))
assert touched == len(view) // mmap.PAGESIZE
""")
    assert code == 0 and report["oom_kills"] == 0
    if report["cgroup_peak_mb"] is not None:  # the pages were charged up to the limit, then reclaimed
        assert 0.9 * LIMIT_MB <= report["cgroup_peak_mb"] <= LIMIT_MB


@needs_cgroup
def test_evicted_files_are_charged_to_the_limited_child(tmp_path):
    """A file already in the page cache costs a new cgroup nothing to read; after eviction the child is charged
    for it, which is what makes a limit meaningful for backends that map their weights."""
    size_mb = 100
    (tmp_path / "weights.bin").write_bytes(os.urandom(size_mb * 2**20))
    read = f"f = open({str(tmp_path / 'weights.bin')!r}, 'rb')\nwhile f.read(2**20): pass"  # 1 MB at a time
    cached = _run_limited(read)[1]["cgroup_peak_mb"]
    if cached is None:
        pytest.skip("this cgroup version reports no peak")
    evict_page_cache(tmp_path)
    charged = _run_limited(read)[1]["cgroup_peak_mb"]
    assert charged - cached >= 0.8 * size_mb, (cached, charged)


def test_no_cgroup_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="needs a writable memory cgroup"):
        MemoryLimit(LIMIT_MB, root=tmp_path)
