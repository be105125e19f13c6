"""Named sampling presets, one home for what README recommends (splat into generate: `**PRESETS["turbo"]`).

- fast: UniPC with Karras sigmas at 15 steps, the fewest UNet calls whose error has converged in the sampler study
  (studies/sampler_quality).
- turbo: the fast preset with the fewest UNet GFLOP per clip whose distance to the true distribution on the trained
  oracle stays within 10% of the fast preset's (studies/turbo): guidance only where sigma is in
  (0.5, 3], and the full UNet every fourth step (and where guidance resumes), its shallow branch between: 5 full
  and 10 shallow calls, 3.0x fewer UNet GFLOP per clip, distance 0.98x the fast preset's.
"""

from __future__ import annotations

from typing import Any

FAST: dict[str, Any] = {"steps": 15, "scheduler": "unipc", "scheduler_options": {"use_karras_sigmas": True}}
TURBO: dict[str, Any] = {**FAST, "guidance_interval": (0.5, 3.0), "cache_interval": 4}
PRESETS: dict[str, dict[str, Any]] = {"fast": FAST, "turbo": TURBO}
