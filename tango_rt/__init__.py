"""tango-rt: fast inference for the Tango family of text-to-audio models.

    from tango_rt import Tango
    tango = Tango("declare-lab/tango2")
    audio = tango.generate("An audience cheering and clapping")  # int16, 16 kHz

Attributes load lazily so that `import tango_rt` stays cheap and never imports torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Tango", "__version__"]

if TYPE_CHECKING:
    from .runtime.tango import Tango


def __getattr__(name: str) -> Any:
    if name == "Tango":
        from .runtime.tango import Tango

        return Tango
    raise AttributeError(f"module 'tango_rt' has no attribute {name!r}")
