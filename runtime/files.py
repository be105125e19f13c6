"""File helpers shared by checkpoints and artifacts."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

BLOCK = 1 << 24


def sha256_files(paths: Iterable[Path]) -> str:
    """One SHA-256 over the files' bytes in order, as "sha256:<hex>" (16 MB reads: multi-GB weights are fine)."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            for block in iter(lambda handle=handle: handle.read(BLOCK), b""):
                digest.update(block)
    return "sha256:" + digest.hexdigest()
