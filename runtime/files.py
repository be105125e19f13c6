"""File helpers shared by checkpoints and artifacts: digests (cached) and the Hub id pattern."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

BLOCK = 1 << 24
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")  # org/name, as the Hugging Face Hub spells repository ids


def sha256_files(paths: Iterable[Path]) -> str:
    """One SHA-256 over the files' bytes in order, as "sha256:<hex>" (16 MB reads: multi-GB weights are fine)."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            for block in iter(lambda handle=handle: handle.read(BLOCK), b""):
                digest.update(block)
    return "sha256:" + digest.hexdigest()


def digest_cache_path() -> Path:
    """$TANGO_RT_CACHE/digests.json (default ~/.cache/tango-rt, or under $XDG_CACHE_HOME)."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tango-rt"
    return Path(os.environ.get("TANGO_RT_CACHE") or default) / "digests.json"


def cached_sha256(paths: Sequence[Path]) -> str:
    """sha256_files, remembered per (resolved path, size, mtime): mixing torch networks with an export checks the
    checkpoint's 5 GB of weights against the export's record on every load, and hashing them costs ~10 s. A file
    rewritten in place changes its mtime (or size) and is hashed again. An unwritable cache only costs the time."""
    key = json.dumps([[str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns] for p in paths])
    cache_file = digest_cache_path()
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    if key in cache:
        return cache[key]
    digest = sha256_files(paths)
    cache[key] = digest
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache))
        tmp.replace(cache_file)
    except OSError:
        pass
    return digest
