"""One declaration per component: IO names, dtypes, symbolic shapes and the shape ranges they support.

ONNX export (input/output names, dynamic axes, sample inputs), TensorRT builds (optimization profiles), the
runtime's input checks and every backend read these declarations; nothing else spells an IO name or a shape.
Symbolic dimensions:

    cfg_batch      rows the text encoder and UNet see: 2 x batch under classifier-free guidance
    batch          latents / clips per call: prompts x samples (the VAE and vocoder; clips encoded, for audio in)
    text_len       T5 tokens, padded to the longest prompt
    latent_frames  latent time axis (256 for 10.24 s); a multiple of the UNet's downsampling
    mel_frames     latent_frames x the VAE's upsampling
    samples        waveform length, derived from mel_frames by the vocoder's transposed convolutions
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .config import DEFAULT_MAX_BATCH, PipelineConfig
from .errors import InputError

Dim = str | int
T5_MAX_LENGTH = 512  # T5's positional limit: the longest prompt in tokens (when the tokenizer config gives none)
TYPICAL_TEXT_LEN = 32  # tokens of a typical prompt: profiles' optimum, benchmark inputs
STATIC_TEXT_LEN = 64  # default text length of static engines (prompts are padded up to it)
BATCH_HINT = "clips per call = prompts x samples: lower batch_size or samples, or re-export with a larger --max-batch"
DIM_HINTS = {
    "batch": BATCH_HINT,
    "cfg_batch": BATCH_HINT + " (guidance doubles it)",
    "text_len": "prompt tokens, padded to the longest prompt",
    "latent_frames": "audio length in latent frames",
}

TEXT_ENCODER = "text_encoder"
UNET = "unet"
VAE_DECODER = "vae_decoder"
VOCODER = "vocoder"
VAE_ENCODER = "vae_encoder"
UNET_SHALLOW = "unet_shallow"
NOISE_PRED = "noise_pred"  # the UNet's model output (its other output is the deep feature cached steps reuse)
CORE = (TEXT_ENCODER, UNET, VAE_DECODER, VOCODER)  # what every generation runs: loaded with the model
# every declared network; the others load on first use: the VAE encoder (audio in), the shallow UNet (cached steps)
COMPONENTS = (*CORE, VAE_ENCODER, UNET_SHALLOW)


@dataclass(frozen=True)
class TensorSpec:
    """One input or output: its graph name, numpy dtype name, shape (ints or symbolic dimension names) and the
    kind of content a realistic sample holds (export traces and `check` feed such samples)."""

    name: str
    dtype: str
    shape: tuple[Dim, ...]
    content: str = "normal"

    def resolve(self, dims: Mapping[str, int]) -> tuple[int, ...]:
        return tuple(d if isinstance(d, int) else dims[d] for d in self.shape)

    def to_dict(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}


@dataclass(frozen=True)
class DimRange:
    """Supported values of one symbolic dimension; opt is what TensorRT tunes for."""

    min: int
    opt: int
    max: int
    multiple_of: int = 1

    def check(self, value: int) -> str | None:
        """Return why `value` is unsupported, or None."""
        if not self.min <= value <= self.max:
            return f"{value} is outside the supported range [{self.min}, {self.max}]"
        if value % self.multiple_of:
            return f"{value} is not a multiple of {self.multiple_of}"
        return None

    def to_list(self) -> list[int]:
        return [self.min, self.opt, self.max, self.multiple_of]

    @classmethod
    def from_list(cls, values: list[int]) -> DimRange:
        return cls(*values)


def dims(
    config: PipelineConfig, batch: int, text_len: int, latent_frames: int | None = None, guided: bool = True
) -> dict[str, int]:
    """Every symbolic dimension of one call, from the three free ones: the only place the relations between
    them (guidance doubles the batch, the VAE and vocoder scale the time axis) are written down."""
    frames = config.latent_frames if latent_frames is None else latent_frames
    mel = config.mel_frames(frames)
    return {
        "batch": batch,
        "cfg_batch": (2 if guided else 1) * batch,
        "text_len": text_len,
        "latent_frames": frames,
        "mel_frames": mel,
        "samples": config.num_samples(mel),
    }


def ranges_between(low: Mapping[str, int], opt: Mapping[str, int], high: Mapping[str, int],
                   multiples: Mapping[str, int] | None = None) -> dict[str, DimRange]:
    """DimRanges of every dimension from three `dims` results."""
    steps = multiples or {}
    return {k: DimRange(low[k], opt[k], high[k], steps.get(k, 1)) for k in opt}


@dataclass(frozen=True)
class ShapeProfile:
    """The shapes an exported graph or engine is declared (and tested) for."""

    max_batch: int = DEFAULT_MAX_BATCH
    text_len: DimRange = DimRange(1, TYPICAL_TEXT_LEN, T5_MAX_LENGTH)
    max_duration: float | None = None  # seconds; None: 4x the model's default length (40.96 s for Tango)

    def ranges(self, config: PipelineConfig) -> dict[str, DimRange]:
        block = config.unet_downsample
        longest = 4 * config.latent_frames if self.max_duration is None else config.latent_frames_for(self.max_duration)
        frames = DimRange(block, min(config.latent_frames, longest), longest, block)
        text_max = min(self.text_len.max, config.tokenizer_max_length)
        low = dims(config, 1, self.text_len.min, frames.min, guided=False)  # guidance <= 1: one row per clip
        opt = dims(config, 1, self.text_len.opt, frames.opt)
        high = dims(config, self.max_batch, text_max, frames.max)
        multiples = {"latent_frames": frames.multiple_of, "mel_frames": frames.multiple_of * config.vae_upsample}
        return ranges_between(low, opt, high, multiples)


@dataclass(frozen=True)
class ComponentSpec:
    """A network's contract: what goes in, what comes out, and which axes are dynamic."""

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        """torch.onnx.export's dynamic_axes: every symbolic dimension of every input and output."""
        return {
            t.name: {i: d for i, d in enumerate(t.shape) if isinstance(d, str)} for t in self.inputs + self.outputs
        }

    def infer_dims(self, feeds: Mapping[str, np.ndarray]) -> dict[str, int]:
        """Bind symbolic dimensions to the feeds' sizes; raise InputError on a name, dtype or rank mismatch."""
        missing = [n for n in self.input_names if n not in feeds]
        unexpected = [n for n in feeds if n not in self.input_names]
        if missing or unexpected:
            raise InputError(f"{self.name}: missing input(s) {missing}, unexpected input(s) {unexpected}; "
                             f"expected exactly {self.input_names}")
        dims: dict[str, int] = {}
        for t in self.inputs:
            array = feeds[t.name]
            if array.dtype != np.dtype(t.dtype):
                raise InputError(f"{self.name}: input '{t.name}' has dtype {array.dtype}, expected {t.dtype}")
            if array.ndim != len(t.shape):
                raise InputError(f"{self.name}: input '{t.name}' has shape {array.shape}, expected {t.shape}")
            for axis, (want, got) in enumerate(zip(t.shape, array.shape, strict=True)):
                if isinstance(want, int) and want != got:
                    raise InputError(
                        f"{self.name}: input '{t.name}' axis {axis} is {got}, expected {want} (shape {t.shape})"
                    )
                if isinstance(want, str) and dims.setdefault(want, got) != got:
                    raise InputError(
                        f"{self.name}: '{want}' is {dims[want]} in one input and {got} in '{t.name}'"
                    )
        return dims

    def check_feeds(self, feeds: Mapping[str, np.ndarray], ranges: Mapping[str, DimRange]) -> dict[str, int]:
        """infer_dims, then check each dimension against the declared ranges."""
        dims = self.infer_dims(feeds)
        for name, value in dims.items():
            problem = ranges[name].check(value) if name in ranges else None
            if problem:
                hint = f"; {DIM_HINTS[name]}" if name in DIM_HINTS else ""
                raise InputError(f"{self.name}: {name} = {problem} declared for this model{hint}")
        return dims

    def sample_inputs(self, dims: Mapping[str, int], config: PipelineConfig, seed: int = 0) -> dict[str, np.ndarray]:
        """Inputs with realistic content (padding in the masks, valid token ids) for export and checks."""
        rng = np.random.default_rng(seed)
        feeds = {}
        for t in self.inputs:
            shape = t.resolve(dims)
            if t.content == "token_ids":
                feeds[t.name] = rng.integers(2, config.text_vocab_size, shape).astype(t.dtype)
            elif t.content == "mask":
                mask = np.ones(shape, dtype=t.dtype)
                for row in range(1, shape[0]):  # later rows padded, as the unconditional prompt is
                    mask[row, max(1, shape[1] - row) :] = 0
                feeds[t.name] = mask
            elif t.content == "timestep":
                feeds[t.name] = np.full(shape, rng.integers(1, 1000), dtype=t.dtype)
            elif t.content == "log_mel":  # log of magnitudes clamped at 1e-5: about -11.5 (silence) to 2
                feeds[t.name] = (rng.standard_normal(shape, dtype=np.float32) * 2.5 - 5).astype(t.dtype)
            else:
                feeds[t.name] = rng.standard_normal(shape, dtype=np.float32).astype(t.dtype)
        return feeds


def component_specs(config: PipelineConfig) -> dict[str, ComponentSpec]:
    """The networks of a Tango model with this config: the four of generation and the VAE encoder (audio in)."""
    hidden, channels, bins = config.text_hidden_size, config.latent_channels, config.latent_bins
    latent = ("latent_frames", bins)
    mel = ("batch", 1, "mel_frames", config.mel_bins)
    unet_inputs = (
        TensorSpec("sample", "float32", ("cfg_batch", channels, *latent)),
        TensorSpec("timestep", "float32", ("cfg_batch",), "timestep"),
        TensorSpec("encoder_hidden_states", "float32", ("cfg_batch", "text_len", hidden)),
        TensorSpec("encoder_attention_mask", "bool", ("cfg_batch", "text_len"), "mask"),
    )
    deep_feature = TensorSpec("deep_feature", "float32", ("cfg_batch", config.unet_feature_channels, *latent))
    noise_pred = TensorSpec(NOISE_PRED, "float32", ("cfg_batch", channels, *latent))
    latents = ("batch", channels, *latent)
    return {
        TEXT_ENCODER: ComponentSpec(
            TEXT_ENCODER,
            inputs=(
                TensorSpec("input_ids", "int64", ("cfg_batch", "text_len"), "token_ids"),
                TensorSpec("attention_mask", "int64", ("cfg_batch", "text_len"), "mask"),
            ),
            outputs=(TensorSpec("last_hidden_state", "float32", ("cfg_batch", "text_len", hidden)),),
        ),
        # one UNet call; it also returns the deep feature the shallow branch (UNET_SHALLOW) reuses on cached steps
        UNET: ComponentSpec(UNET, inputs=unet_inputs, outputs=(noise_pred, deep_feature)),
        VAE_DECODER: ComponentSpec(
            VAE_DECODER,
            inputs=(TensorSpec("latents", "float32", latents),),
            outputs=(TensorSpec("mel", "float32", mel),),
        ),
        VOCODER: ComponentSpec(
            VOCODER,
            inputs=(TensorSpec("mel", "float32", ("batch", "mel_frames", config.mel_bins)),),
            outputs=(TensorSpec("waveform", "float32", ("batch", "samples")),),
        ),
        # the UNet's shallow branch on a cached deep feature (DeepCache; runtime/feature_cache.py)
        UNET_SHALLOW: ComponentSpec(
            UNET_SHALLOW,
            inputs=(*unet_inputs, TensorSpec(deep_feature.name, "float32", deep_feature.shape)),
            outputs=(noise_pred,),
        ),
        # the VAE's posterior over latents of a log-mel (AudioLDM's encode_first_stage): its mean and its
        # log-variance clamped to [-30, 20] as the original's DiagonalGaussianDistribution; not yet scaled
        VAE_ENCODER: ComponentSpec(
            VAE_ENCODER,
            inputs=(TensorSpec("mel", "float32", mel, "log_mel"),),
            outputs=(TensorSpec("mean", "float32", latents), TensorSpec("logvar", "float32", latents)),
        ),
    }
