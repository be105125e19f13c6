"""Exceptions that tango-rt raises for problems a user can fix.

Every message names the thing at fault (prompt, file, key, shape, version) and, where there is one, the fix.
The CLI prints these without a traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class TangoError(Exception):
    """Base class: a problem with the user's input, files or environment, not a bug in tango-rt."""


class InputError(TangoError, ValueError):
    """A bad argument: prompt, step count, guidance, latents or noise of the wrong shape."""


class CheckpointError(TangoError):
    """A checkpoint that cannot be found, downloaded or loaded (missing file, key or shape mismatch)."""


class ArtifactError(TangoError):
    """An exported model folder or engine that is missing, stale or built for something else."""


class BackendError(TangoError):
    """A backend that is not installed or cannot run here (no GPU, no TensorRT, unknown provider)."""


class NumericsError(TangoError):
    """A component produced NaN or Inf: the output would be silent garbage, so we stop instead."""


class Interrupted(TangoError):
    """Every row of a call was withdrawn between two UNet steps (its clients went away, its deadlines passed)."""


class TangoWarning(UserWarning):
    """Something tango-rt did on the user's behalf that they would want to hear about (a fallback, a default)."""


def warn(message: str) -> None:
    """Warn once per call site with TangoWarning, pointing at the caller's caller."""
    import warnings

    warnings.warn(message, TangoWarning, stacklevel=3)
