"""Build Tango's networks as torch modules from a Checkpoint, with strict weight loading.

The maintained classes do the work: transformers' T5EncoderModel and SpeechT5HifiGan, diffusers'
UNet2DConditionModel and AutoencoderKL (AudioLDM keys mapped by diffusers' own convert_ldm_vae_checkpoint).
Each network is wrapped in a small `*Graph` module whose forward takes exactly the inputs of its ComponentSpec,
in order; the torch backend runs these modules and the ONNX exporter traces the very same ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checkpoint import Checkpoint
from ..errors import CheckpointError
from ..specs import COMPONENTS, TEXT_ENCODER, UNET, UNET_SHALLOW, VAE_DECODER, VAE_ENCODER, VOCODER

MAX_KEYS_SHOWN = 8
TIED_T5_KEYS = ("shared.weight", "encoder.embed_tokens.weight")
FILE_PREFIXES = {
    "main": ("text_encoder.", "unet."),
    "vae": ("encoder.", "decoder.", "quant_conv.", "post_quant_conv.", "vocoder."),
}


class TextEncoderGraph(nn.Module):
    """Flan-T5 encoder: (input_ids, attention_mask) -> last_hidden_state."""

    def __init__(self, t5: nn.Module):
        super().__init__()
        self.t5 = t5

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.t5(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


class UNetGraph(nn.Module):
    """One UNet call -> (noise_pred, deep_feature); the bool mask becomes diffusers' additive cross-attention bias
    (1 - m) * -10000. The deep feature is the hidden state entering the last up block's resnet `cut` (the cached
    input of the shallow call, runtime/feature_cache.py), read by a hook while diffusers' own forward runs."""

    def __init__(self, unet: nn.Module, cut: int):
        super().__init__()
        self.unet, self.cut = unet, cut
        self._captured: list[torch.Tensor] = []
        last = unet.up_blocks[-1]
        if cut == 0:
            last.register_forward_pre_hook(self._capture_input, with_kwargs=True)
        else:
            layers = last.attentions if getattr(last, "attentions", None) else last.resnets
            layers[cut - 1].register_forward_hook(self._capture_output)

    def _capture_input(self, _module, args, kwargs) -> None:
        self._captured.append(kwargs["hidden_states"] if "hidden_states" in kwargs else args[0])

    def _capture_output(self, _module, _args, output) -> None:
        self._captured.append(output[0] if isinstance(output, tuple) else output)

    def forward(self, sample, timestep, encoder_hidden_states, encoder_attention_mask
                ) -> tuple[torch.Tensor, torch.Tensor]:
        self._captured.clear()
        noise_pred = self.unet(
            sample,
            timestep,
            encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_attention_mask,
            return_dict=False,
        )[0]
        return noise_pred, self._captured.pop()


class ShallowUNetGraph(nn.Module):
    """The shallow branch of the UNet on a cached deep feature (DeepCache): the time embedding, conv_in, the first
    down block's first (resnet, attention) pairs whose outputs the last up block takes as skips, the last up block
    from its resnet `cut` on, and conv_out; every module is the full UNet's own (no copies), run in the order
    diffusers' UNet2DConditionModel and its blocks run them, so fed the deep feature of a full call at the same
    input it returns that call's noise_pred."""

    def __init__(self, unet: nn.Module, cut: int):
        super().__init__()
        if getattr(unet, "class_embedding", None) is not None or getattr(unet, "add_embedding", None) is not None \
                or getattr(unet, "time_embed_act", None) is not None:
            raise CheckpointError("the shallow UNet branch covers Tango's UNet (no class, added or activated time "
                                  "embeddings); this UNet config has one")
        self.cut = cut
        self._unet = [unet]  # for its time-embedding method; only the modules the branch runs are registered
        last = unet.up_blocks[-1]
        skips = len(last.resnets) - 1 - cut  # skips the last up block takes from the first down block
        self.time_embedding, self.conv_in = unet.time_embedding, unet.conv_in
        self.down = nn.ModuleList(self._pairs(unet.down_blocks[0], slice(0, skips)))
        self.up = nn.ModuleList(self._pairs(last, slice(cut, None)))
        self.conv_norm_out, self.conv_act, self.conv_out = unet.conv_norm_out, unet.conv_act, unet.conv_out

    @staticmethod
    def _pairs(block: nn.Module, layers: slice) -> list[nn.ModuleList]:
        """(resnet, attention) pairs of a block (a block without attentions: (resnet,))."""
        attentions = getattr(block, "attentions", None)
        resnets = list(block.resnets)[layers]
        if not attentions:
            return [nn.ModuleList([resnet]) for resnet in resnets]
        return [nn.ModuleList(pair) for pair in zip(resnets, list(attentions)[layers], strict=True)]

    @staticmethod
    def _run(pair: nn.ModuleList, hidden: torch.Tensor, temb: torch.Tensor, attend: dict) -> torch.Tensor:
        hidden = pair[0](hidden, temb)
        return pair[1](hidden, **attend)[0] if len(pair) > 1 else hidden

    def forward(self, sample, timestep, encoder_hidden_states, encoder_attention_mask, deep_feature) -> torch.Tensor:
        temb = self.time_embedding(self._unet[0].get_time_embed(sample=sample, timestep=timestep), None)
        mask = ((1 - encoder_attention_mask.to(sample.dtype)) * -10000.0).unsqueeze(1)
        attend = dict(encoder_hidden_states=encoder_hidden_states, attention_mask=None, encoder_attention_mask=mask,
                      return_dict=False)
        hidden = self.conv_in(sample)
        skips = [hidden]
        for pair in self.down:
            hidden = self._run(pair, hidden, temb, attend)
            skips.append(hidden)
        hidden = deep_feature
        for pair in self.up:
            hidden = self._run(pair, torch.cat([hidden, skips.pop()], dim=1), temb, attend)
        return self.conv_out(self.conv_act(self.conv_norm_out(hidden)))


class VAEDecoderGraph(nn.Module):
    """latents -> mel, including the 1/scale_factor multiply and post_quant_conv, as decode_first_stage does."""

    def __init__(self, vae: nn.Module, scale_factor: float):
        super().__init__()
        self.vae = vae
        self.inverse_scale = 1.0 / scale_factor  # multiply, as the original does: dividing differs by 1 ulp

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latents * self.inverse_scale, return_dict=False)[0]


class VAEEncoderGraph(nn.Module):
    """log-mel (B, 1, frames, bins) -> the posterior's mean and log-variance, as AudioLDM's encode_first_stage:
    encoder, quant_conv, split in halves, log-variance clamped to [-30, 20] (its DiagonalGaussianDistribution;
    diffusers' has the same clamp)."""

    LOGVAR_RANGE = (-30.0, 20.0)

    def __init__(self, vae: nn.Module):
        super().__init__()
        self.vae = vae

    def forward(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        moments = self.vae.quant_conv(self.vae.encoder(mel))
        mean, logvar = torch.chunk(moments, 2, dim=1)
        return mean, torch.clamp(logvar, *self.LOGVAR_RANGE)


class VocoderGraph(nn.Module):
    """HiFi-GAN: mel (B, frames, 64) -> waveform (B, samples) in [-1, 1]."""

    def __init__(self, vocoder: nn.Module):
        super().__init__()
        self.vocoder = vocoder

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.vocoder(mel)


def _show(keys: Iterable[str], prefix: str) -> str:
    keys = sorted(keys)
    shown = ", ".join(prefix + k for k in keys[:MAX_KEYS_SHOWN])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > MAX_KEYS_SHOWN else "")


def load_strict(module: nn.Module, state: Mapping[str, torch.Tensor], file: Path | str, prefix: str, what: str):
    """load_state_dict(strict=True), but failing with the file, the keys and a fix instead of a torch trace."""
    expected = module.state_dict()
    missing = set(expected) - set(state)
    unexpected = set(state) - set(expected)
    mismatched = [
        f"{prefix}{k} {tuple(state[k].shape)} in the file, {tuple(v.shape)} in the model"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_show(missing, prefix)}")
    if unexpected:
        problems.append(f"unexpected keys: {_show(unexpected, prefix)}")
    if mismatched:
        problems.append("shape mismatches: " + "; ".join(mismatched[:MAX_KEYS_SHOWN]))
    if problems:
        raise CheckpointError(
            f"{file}: the {what} weights do not fit the architecture its configs describe. " + " | ".join(problems)
            + ". Check that the configs (main_config.json, vae_config.json, vocoder_config.json, the text encoder "
            "config) belong to these weights, and that the file is a complete, unmodified Tango checkpoint."
        )
    module.load_state_dict(state, strict=True)


def _load_file(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except FileNotFoundError:
        raise CheckpointError(f"missing weight file {path}") from None
    except Exception as exc:
        raise CheckpointError(f"{path} is not a readable torch state dict ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, expected a state dict")
    return dict(state)


def _split(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def _check_prefixes(state: Mapping[str, Any], file: Path, prefixes: tuple[str, ...]) -> None:
    stray = [k for k in state if not k.startswith(prefixes)]
    if stray:
        raise CheckpointError(
            f"{file}: unexpected keys outside {', '.join(prefixes)}: {_show(stray, '')}. "
            "This does not look like a Tango checkpoint saved by the original code."
        )


def vae_diffusers_config(vae_config: Mapping[str, Any]) -> dict[str, Any]:
    """AudioLDM's ddconfig expressed as diffusers AutoencoderKL arguments."""
    dd = vae_config["ddconfig"]
    if not dd.get("double_z", True) or dd.get("attn_resolutions"):
        raise CheckpointError(
            "vae_config.json: only double_z=true and attn_resolutions=[] (AudioLDM's VAE) map to AutoencoderKL"
        )
    if vae_config.get("embed_dim", dd["z_channels"]) != dd["z_channels"]:
        raise CheckpointError("vae_config.json: embed_dim must equal ddconfig.z_channels to map to AutoencoderKL")
    levels = len(dd["ch_mult"])
    return {
        "in_channels": dd["in_channels"],
        "out_channels": dd["out_ch"],
        "down_block_types": ["DownEncoderBlock2D"] * levels,
        "up_block_types": ["UpDecoderBlock2D"] * levels,
        "block_out_channels": [dd["ch"] * m for m in dd["ch_mult"]],
        "latent_channels": dd["z_channels"],
        "layers_per_block": dd["num_res_blocks"],
        "norm_num_groups": 32,  # AudioLDM hard-codes GroupNorm(32)
        "sample_size": dd["resolution"],
        "scaling_factor": vae_config["scale_factor"],
    }


def _hifigan_config(config: Mapping[str, Any]):
    from transformers import SpeechT5HifiGanConfig

    return SpeechT5HifiGanConfig(
        model_in_dim=config["num_mels"],
        sampling_rate=config["sampling_rate"],
        upsample_initial_channel=config["upsample_initial_channel"],
        upsample_rates=config["upsample_rates"],
        upsample_kernel_sizes=config["upsample_kernel_sizes"],
        resblock_kernel_sizes=config["resblock_kernel_sizes"],
        resblock_dilation_sizes=config["resblock_dilation_sizes"],
        normalize_before=False,
    )


def _vocoder_state(state: Mapping[str, torch.Tensor], num_mels: int) -> dict[str, torch.Tensor]:
    """AudioLDM HiFi-GAN keys -> SpeechT5HifiGan keys: ups.i -> upsampler.i, identity mean / scale."""
    mapped = {("upsampler." + k[4:] if k.startswith("ups.") else k): v for k, v in state.items()}
    mapped.setdefault("mean", torch.zeros(num_mels))
    mapped.setdefault("scale", torch.ones(num_mels))
    return mapped


def _convert_vae(state: dict[str, torch.Tensor], config: dict[str, Any], file: Path) -> dict[str, torch.Tensor]:
    """diffusers' converter, plus a check that it consumed every key (it silently skips unknown ones)."""
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    converted = convert_ldm_vae_checkpoint(state, config)
    used = {t.untyped_storage().data_ptr() for t in converted.values()}
    unused = [k for k, t in state.items() if t.untyped_storage().data_ptr() not in used]
    if unused:
        raise CheckpointError(f"{file}: unexpected VAE keys: {_show(unused, '')}")
    return converted


class ModelBuilder:
    """Builds the wrapped torch modules of one checkpoint; reads each weight file at most once."""

    def __init__(self, checkpoint: Checkpoint, load_weights: bool = True):
        self.checkpoint = checkpoint
        self.load_weights = load_weights and not checkpoint.is_random
        self._files: dict[str, dict[str, torch.Tensor]] = {}
        self._modules: dict[str, nn.Module] = {}  # shared within one build() call (the UNet and its shallow branch)

    def _state(self, key: str, prefix: str) -> dict[str, torch.Tensor]:
        if key not in self._files:
            path = self.checkpoint.weights[key]
            state = _load_file(path)
            _check_prefixes(state, path, FILE_PREFIXES[key])
            self._files[key] = state
        return _split(self._files[key], prefix)

    def text_encoder(self) -> nn.Module:
        from transformers import T5Config, T5EncoderModel

        config = T5Config(**{k: v for k, v in self.checkpoint.t5_config.items() if not k.startswith("_")})
        config._attn_implementation = "eager"  # bit-exact with the original; SDPA differs by ~1e-6
        model = T5EncoderModel(config)
        if self.load_weights:
            state = self._state("main", "text_encoder.")
            for have, want in (TIED_T5_KEYS, TIED_T5_KEYS[::-1]):  # tied embeddings: either copy may be saved
                if have in state and want not in state:
                    state[want] = state[have]
            load_strict(model, state, self.checkpoint.weights["main"], "text_encoder.", "text encoder (T5)")
        return TextEncoderGraph(model)

    def _unet(self) -> nn.Module:
        """diffusers' UNet2DConditionModel with the checkpoint's weights, built once per build() call."""
        if "unet" not in self._modules:
            from diffusers import UNet2DConditionModel

            config = {k: v for k, v in self.checkpoint.unet_config.items() if not k.startswith("_")}
            model = UNet2DConditionModel.from_config(config)
            if self.load_weights:
                load_strict(model, self._state("main", "unet."), self.checkpoint.weights["main"], "unet.", "UNet")
            self._modules["unet"] = model
        return self._modules["unet"]

    def unet(self) -> nn.Module:
        return UNetGraph(self._unet(), self.checkpoint.pipeline_config().unet_cache_cut)

    def unet_shallow(self) -> nn.Module:
        """The shallow branch; built with the UNet in one build() call, the two share its modules."""
        return ShallowUNetGraph(self._unet(), self.checkpoint.pipeline_config().unet_cache_cut)

    def _vae(self):
        """diffusers' AutoencoderKL with the checkpoint's AudioLDM VAE weights (both halves, strictly loaded)."""
        from diffusers import AutoencoderKL

        config = vae_diffusers_config(self.checkpoint.vae_config)
        model = AutoencoderKL.from_config(config)
        if self.load_weights:
            file = self.checkpoint.weights["vae"]
            state = {k: v for k, v in self._state("vae", "").items() if not k.startswith("vocoder.")}
            load_strict(model, _convert_vae(state, config, file), file, "", "VAE")
        return model

    def vae_decoder(self) -> nn.Module:
        model = self._vae()
        model.encoder = None  # the decoder network only: drop the encoder once the strict load has checked it
        model.quant_conv = None
        return VAEDecoderGraph(model, self.checkpoint.vae_config["scale_factor"])

    def vae_encoder(self) -> nn.Module:
        model = self._vae()
        model.decoder = None  # the encoder network only
        model.post_quant_conv = None
        return VAEEncoderGraph(model)

    def vocoder(self) -> nn.Module:
        from transformers import SpeechT5HifiGan

        config = self.checkpoint.vocoder_config
        model = SpeechT5HifiGan(_hifigan_config(config))
        if self.load_weights:
            state = _vocoder_state(self._state("vae", "vocoder."), config["num_mels"])
            load_strict(model, state, self.checkpoint.weights["vae"], "vocoder.", "vocoder (HiFi-GAN)")
        return VocoderGraph(model)

    def build(self, names: Iterable[str] = COMPONENTS) -> dict[str, nn.Module]:
        """The wrapped modules, float32, eval mode, on CPU; random weights are seeded for reproducibility."""
        builders = {TEXT_ENCODER: self.text_encoder, UNET: self.unet, VAE_DECODER: self.vae_decoder,
                    VOCODER: self.vocoder, VAE_ENCODER: self.vae_encoder, UNET_SHALLOW: self.unet_shallow}
        modules = {}
        for name in names:
            torch.manual_seed(self.checkpoint.random_seed)
            modules[name] = builders[name]().eval().requires_grad_(False)
        self._files.clear()
        self._modules.clear()
        return modules


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
