"""The numbers the diffusion loop and every backend share, derived once from a checkpoint's configs.

One source of truth: shapes are never written as literals elsewhere. A torch checkpoint derives this from its
configs; an exported folder stores it as `pipeline.json` and reads it back, so both paths agree by construction.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

DEFAULT_LATENT_FRAMES = 256  # Tango's prepare_latents: 256 latent frames = 1024 mel frames = 10.24 s
DEFAULT_MAX_BATCH = 8  # latents per denoising call (prompts x samples) the exported graphs are declared for
# Where the shallow UNet branch (runtime/feature_cache.py) enters the last up block: at its resnet CACHE_CUT, so a
# cached call runs conv_in, the first down block's first (2 - CACHE_CUT) (resnet, attention) pairs, the last up
# block from resnet CACHE_CUT on, and conv_out. Chosen from the measured cost per block of the full-size UNet
# (studies/unet_blocks): see README, "Less UNet work per clip".
CACHE_CUT = 1


@dataclass(frozen=True)
class PipelineConfig:
    """Shapes and constants of one Tango model; everything else is computed from these."""

    text_hidden_size: int  # T5 d_model: 1024 for Flan-T5-large
    text_vocab_size: int
    tokenizer_max_length: int  # truncation length of the tokenizer (512)
    latent_channels: int  # UNet in/out channels (8)
    unet_downsample: int  # 2 ** (UNet levels - 1): latent frames must be a multiple of it
    vae_upsample: int  # 2 ** (len(ch_mult) - 1): mel frames per latent frame
    vae_scale_factor: float
    mel_bins: int  # 64
    sample_rate: int  # 16000
    vocoder_upsample_rates: tuple[int, ...]
    vocoder_upsample_kernel_sizes: tuple[int, ...]
    latent_frames: int = DEFAULT_LATENT_FRAMES
    # heads of the UNet's self-attention at full latent resolution (0: none there); it sizes the largest tensor an
    # unfused attention makes. 5 is Tango's (attention_head_dim [5, 10, 20, 20]), for manifests written before it.
    unet_full_res_heads: int = 5
    unet_cache_cut: int = CACHE_CUT  # where the shallow branch enters the last up block (the export's, if exported)
    unet_feature_channels: int = 320  # channels of the deep feature at that cut (Tango: 640 at resnet 0, else 320)
    unet_shape: dict[str, Any] | None = None  # runtime.flops.UNetShape.to_dict(): what FLOP counts need

    @property
    def latent_bins(self) -> int:
        """Latent width: mel bins divided by the VAE's upsampling (64 / 4 = 16)."""
        return self.mel_bins // self.vae_upsample

    def latent_shape(self, batch: int, latent_frames: int | None = None) -> tuple[int, int, int, int]:
        frames = self.latent_frames if latent_frames is None else latent_frames
        return (batch, self.latent_channels, frames, self.latent_bins)

    def mel_frames(self, latent_frames: int | None = None) -> int:
        return (self.latent_frames if latent_frames is None else latent_frames) * self.vae_upsample

    def num_samples(self, mel_frames: int) -> int:
        """Waveform length HiFi-GAN produces: each ConvTranspose1d(k, u, padding=(k-u)//2) maps L to (L-1)u-2p+k.

        For 1024 frames this is 163872, not 1024 * 160: the original's output length, reproduced exactly.
        """
        length = mel_frames
        for rate, kernel in zip(self.vocoder_upsample_rates, self.vocoder_upsample_kernel_sizes, strict=True):
            length = (length - 1) * rate - 2 * ((kernel - rate) // 2) + kernel
        return length

    @property
    def samples_per_latent_frame(self) -> int:
        """Waveform samples per latent frame: mel frames per latent frame x the vocoder's upsampling (the STFT
        hop): 4 x 160 = 640 samples, 40 ms, for Tango."""
        hop = 1
        for rate in self.vocoder_upsample_rates:
            hop *= rate
        return self.vae_upsample * hop

    @property
    def mel_hop(self) -> int:
        """Waveform samples per mel frame: the vocoder's total upsampling, which must equal the STFT hop."""
        return self.samples_per_latent_frame // self.vae_upsample

    def latent_frames_for(self, seconds: float) -> int:
        """The fewest latent frames (a multiple of the UNet's downsampling) whose waveform covers `seconds`."""
        return self.latent_frames_covering(self.audio_samples(seconds))

    def latent_frames_covering(self, samples: int) -> int:
        """The fewest latent frames (a multiple of the UNet's downsampling) whose waveform has `samples`. The
        vocoder's output grows by `samples_per_latent_frame` per frame, so the count is computed, not searched."""
        block = self.unet_downsample
        per_block = self.num_samples(self.mel_frames(2 * block)) - self.num_samples(self.mel_frames(block))
        first = self.num_samples(self.mel_frames(block))
        frames = block * (1 + max(0, -(-(samples - first) // per_block)))
        while self.num_samples(self.mel_frames(frames)) < samples:  # guards the linear model: at most one pass
            frames += block
        return frames

    def audio_samples(self, seconds: float) -> int:
        """Waveform samples in `seconds` of audio (rounded to the nearest sample)."""
        return round(seconds * self.sample_rate)

    def duration(self, latent_frames: int | None = None) -> float:
        """Seconds of audio the vocoder produces from this many latent frames (10.24 s for 256)."""
        return self.num_samples(self.mel_frames(latent_frames)) / self.sample_rate

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PipelineConfig:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for key in ("vocoder_upsample_rates", "vocoder_upsample_kernel_sizes"):
            values[key] = tuple(values[key])
        return cls(**values)
