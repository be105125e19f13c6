"""Installed library versions, recorded by exports, bench results and the server's build info."""

from __future__ import annotations

import contextlib
import platform


def library_versions(*names: str) -> dict[str, str]:
    """Versions of the named distributions that are installed, plus Python's."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": platform.python_version()}
    for name in names:
        with contextlib.suppress(PackageNotFoundError):
            versions[name] = version(name)
    return versions
