"""What one server is configured with: the model, batching, the per-request caps. No dependencies, so the command
line reads its defaults from here without the serving extra installed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MULTIPART_OVERHEAD = 4096  # part headers and boundaries of a multipart upload (or a JSON body's own quoting)


@dataclass
class Settings:
    """One server's configuration; the defaults are the CLI's. The caps bound what one request may cost: the
    worker is shared, so a request for 1000 steps or 10 minutes of audio would hold everyone else up for hours.
    Defaults: 200 steps (the paper's setting; the fast presets need 15-25), 30 s of audio per request (raise it
    for long-form beds: the worker is held for the whole clip), 4 clips per request, a 64 KiB body (a
    1000-character prompt and every option fit in 2 KiB), and for audio in an 8 MiB file of at most 30 s (a 30 s
    WAV at 44.1 kHz stereo is 5 MiB; the body cap grows by what the audio may take)."""

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
    max_audio_bytes: int = 8 * 2**20
    max_audio_s: float = 30.0
    api_key: str | None = None
    warmup: bool = True
    header_timeout_s: float = 60.0  # a connection's first request headers must arrive within this (nginx's 60 s)
    body_timeout_s: float = 60.0  # each chunk of a request body must arrive within this (nginx's 60 s)
    max_connections: int = 256  # open connections; past it a new one gets 503 and is closed
    ui: bool = True  # the playground page at / (serving/playground.py); serve --no-ui turns it off
    preset: str | None = None  # the defaults of options a request leaves out (runtime/presets.py); None: the original's

    def body_cap(self, content_type: str) -> int:
        """The body cap the gate enforces before parsing: `max_body_bytes` for a request, plus room for one audio
        file where the media type can carry one (base64 in JSON is 4/3 of the file; a multipart upload the file
        and its part headers). max_audio_bytes 0 turns audio input off."""
        kind = content_type.split(";", 1)[0].strip().lower()
        if self.max_audio_bytes <= 0 or kind not in ("application/json", "multipart/form-data"):
            return self.max_body_bytes
        audio = self.max_audio_bytes if kind == "multipart/form-data" else -(-4 * self.max_audio_bytes // 3)
        return self.max_body_bytes + audio + MULTIPART_OVERHEAD

    def gate(self) -> tuple[str | None, Any, float]:
        """What the front gate (serving/guard.py) checks: the key, the body cap by media type, the body timeout."""
        return self.api_key, self.body_cap, self.body_timeout_s

    def cap(self, name: str) -> float:
        """A per-request cap by the name an option declares (runtime/request.py: Option.cap): a setting, or one
        derived from them (clips per request are also bounded by clips per batch; base64 of the largest audio
        file)."""
        if name == "max_samples":
            return min(self.max_samples, self.max_batch)
        if name == "max_audio_base64":
            return -(-4 * self.max_audio_bytes // 3)
        return getattr(self, name)

    def limits(self) -> dict[str, Any]:
        """The per-request caps, as /v1/models shows them."""
        return {"max_steps": self.max_steps, "max_duration_s": self.max_duration_s, "max_samples": self.max_samples,
                "max_prompt_chars": self.max_prompt_chars, "max_body_bytes": self.max_body_bytes,
                "max_audio_bytes": self.max_audio_bytes, "max_audio_s": self.max_audio_s,
                "timeout_s": self.timeout_s, "header_timeout_s": self.header_timeout_s,
                "body_timeout_s": self.body_timeout_s, "max_connections": self.max_connections}
