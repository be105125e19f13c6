"""Which CUDA device a backend option names: one parser for every GPU backend."""

from __future__ import annotations

from ..errors import BackendError


def cuda_index(device: str | None, backend: str) -> int:
    """0 for None or "cuda", N for "cuda:N"; anything else is not a CUDA device."""
    if device in (None, "cuda"):
        return 0
    if device.startswith("cuda:") and device[5:].isdigit():
        return int(device[5:])
    raise BackendError(f"the {backend} backend runs on CUDA devices ('cuda' or 'cuda:N'), not {device!r}")
