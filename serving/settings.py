"""What one server is configured with: the model, batching, the per-request caps. No dependencies, so the command
line reads its defaults from here without the serving extra installed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Settings:
    """One server's configuration; the defaults are the CLI's. The caps bound what one request may cost: the
    worker is shared, so a request for 1000 steps or 10 minutes of audio would hold everyone else up for hours.
    Defaults: 200 steps (the paper's setting; the fast presets need 15-25), 30 s of audio per request (longer
    clips belong in long-form generation), 4 clips per request, a 64 KiB body (a 1000-character prompt and every
    option fit in 2 KiB)."""

    model: str
    backend: str = "torch"
    device: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    max_batch: int = 4
    max_wait_ms: float = 20.0
    max_queue: int = 32
    timeout_s: float = 600.0
    max_prompt_chars: int = 1000
    max_steps: int = 200
    max_duration_s: float = 30.0
    max_samples: int = 4
    max_body_bytes: int = 65536
    api_key: str | None = None
    warmup: bool = True

    def limits(self) -> dict[str, Any]:
        """The per-request caps, as /v1/models shows them."""
        return {"max_steps": self.max_steps, "max_duration_s": self.max_duration_s, "max_samples": self.max_samples,
                "max_prompt_chars": self.max_prompt_chars, "max_body_bytes": self.max_body_bytes,
                "timeout_s": self.timeout_s}
