"""Find a Tango checkpoint (Hub id or local folder, original layout) and read its configs, without torch.

Layout of a release (declare-lab/tango, tango2, tango-full, tango2-full, ...):

    main_config.json         text_encoder_name, scheduler_name, unet_model_config_path (relative to the original
                             source tree: we use it when it resolves inside the checkpoint, the shipped copy otherwise)
    vae_config.json          AudioLDM VAE arguments and scale_factor
    pytorch_model_main.bin   text_encoder.* (T5 encoder) and unet.* (diffusers keys)
    pytorch_model_vae.bin    AudioLDM VAE keys and vocoder.* (HiFi-GAN)
    vocoder_config.json      optional HiFi-GAN hyper-parameters (the original hard-codes them)
    stft_config.json, pytorch_model_stft.bin   audio -> mel front end (audio in): fetched on first use only

Only the files generation needs are downloaded: for google/flan-t5-large that is its config and tokenizer, not
its 3 GB of weights (the T5 weights live in pytorch_model_main.bin).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from .config import CACHE_CUT, PipelineConfig
from .errors import CheckpointError, warn
from .files import HUB_ID, cached_sha256
from .flops import UNetShape
from .schedulers import default_scheduler_config
from .tokenizer import TOKENIZER_FILES, PromptTokenizer

DEFAULT_MODEL = "declare-lab/tango2"
REQUIRED_FILES = ("main_config.json", "vae_config.json", "pytorch_model_main.bin", "pytorch_model_vae.bin")
OPTIONAL_FILES = ("vocoder_config.json",)
TEXT_ENCODER_FILES = ("config.json", *TOKENIZER_FILES)
FRONT_END_FILES = ("stft_config.json", "pytorch_model_stft.bin")  # the audio -> mel front end (audio in)
# TacotronSTFT's arguments in every Tango release: what a random-weight model's front end is built with
DEFAULT_STFT = {"filter_length": 1024, "hop_length": 160, "win_length": 1024, "n_mel_channels": 64,
                "sampling_rate": 16000, "mel_fmin": 0, "mel_fmax": 8000}
WEIGHT_FILES = {"main": "pytorch_model_main.bin", "vae": "pytorch_model_vae.bin"}
ORIGINAL_UNET_CONFIG_PATH = "configs/diffusion_model_config.json"  # relative to declare-lab/tango's source tree
RANDOM_PREFIX = "random:"
# HiFi-GAN config keys that describe training or the STFT front end: present in real configs, unused here
HIFIGAN_TRAINING_KEYS = frozenset({
    "resblock", "num_gpus", "batch_size", "learning_rate", "adam_b1", "adam_b2", "lr_decay", "seed", "segment_size",
    "num_freq", "n_fft", "hop_size", "win_size", "fmin", "fmax", "fmax_for_loss", "num_workers", "dist_config",
})  # random:full / random:tiny: the architecture with random weights


def package_data(name: str) -> Any:
    """A JSON file shipped in tango_rt/runtime/data."""
    return json.loads(resources.files("tango_rt.runtime").joinpath(f"data/{name}").read_text())


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"missing file {path}") from None
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}") from None


def hub_download(repo_id: str, files: tuple[str, ...], what: str, revision: str | None = None) -> Path:
    """Fetch `files` (names or glob patterns) of a Hub repo at `revision` (or find them in the local cache) and
    return the snapshot folder."""
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(repo_id=repo_id, allow_patterns=list(files), revision=revision))
    except Exception as exc:  # huggingface_hub raises many types: offline, 404, auth, connection
        raise CheckpointError(
            f"could not get {what} {repo_id!r} from the Hugging Face Hub ({type(exc).__name__}: {exc}). "
            f"If this machine is offline, download it where there is network access "
            f"(`hf download {repo_id}`) and copy the cache, or pass a local folder in the original Tango layout."
        ) from None
    return folder


@dataclass
class Checkpoint:
    """Everything about a Tango model but its tensors: where they are and the configs to build modules."""

    source: str
    t5_config: dict[str, Any]
    unet_config: dict[str, Any]
    vae_config: dict[str, Any]
    vocoder_config: dict[str, Any]
    scheduler_config: dict[str, Any]
    tokenizer_dir: Path | None
    weights: dict[str, Path] = field(default_factory=dict)  # empty: random initialisation (or configs_only)
    root: Path | None = None
    random_seed: int = 0
    configs_only: bool = False  # read for `tango-rt info`: the weight files were not fetched
    revision: str | None = None  # the Hub revision it was fetched at (the front end is fetched on first use)

    @property
    def is_random(self) -> bool:
        return not self.weights and not self.configs_only

    def pipeline_config(self) -> PipelineConfig:
        ddconfig = self.vae_config["ddconfig"]
        return PipelineConfig(
            text_hidden_size=int(self.t5_config["d_model"]),
            text_vocab_size=int(self.t5_config["vocab_size"]),
            tokenizer_max_length=self.tokenizer().max_length,
            latent_channels=int(self.unet_config["in_channels"]),
            unet_downsample=2 ** (len(self.unet_config["block_out_channels"]) - 1),
            vae_upsample=2 ** (len(ddconfig["ch_mult"]) - 1),
            vae_scale_factor=float(self.vae_config["scale_factor"]),
            mel_bins=int(self.vocoder_config["num_mels"]),
            sample_rate=int(self.vocoder_config["sampling_rate"]),
            vocoder_upsample_rates=tuple(self.vocoder_config["upsample_rates"]),
            vocoder_upsample_kernel_sizes=tuple(self.vocoder_config["upsample_kernel_sizes"]),
            unet_full_res_heads=_full_res_heads(self.unet_config),
            unet_cache_cut=CACHE_CUT,
            unet_feature_channels=feature_channels(self.unet_config, CACHE_CUT),
            unet_shape=UNetShape.from_config(self.unet_config).to_dict(),
        )

    def tokenizer(self) -> PromptTokenizer:
        if self.tokenizer_dir is None:  # random weights: a toy tokenizer, since timing needs no real vocabulary
            path = resources.files("tango_rt.runtime").joinpath("data/toy_tokenizer.json")
            return PromptTokenizer(str(path))
        return PromptTokenizer.from_folder(self.tokenizer_dir)

    def front_end_files(self) -> tuple[Path, Path]:
        """(stft_config.json, pytorch_model_stft.bin): from the folder, or fetched now from the Hub (generation
        does not need them, so they are not downloaded with the model)."""
        root = self.root
        if root is None:
            raise CheckpointError(f"{self.source} has no files; random-weight models build their front end")
        if not all((root / name).is_file() for name in FRONT_END_FILES) and HUB_ID.match(self.source) \
                and not Path(self.source).expanduser().exists():
            root = hub_download(self.source, FRONT_END_FILES, "audio front end", self.revision)
        missing = [name for name in FRONT_END_FILES if not (root / name).is_file()]
        if missing:
            raise CheckpointError(f"{root} lacks {', '.join(missing)}: audio input needs the checkpoint's mel front "
                                  "end (the original layout ships both files)")
        return root / FRONT_END_FILES[0], root / FRONT_END_FILES[1]

    def mel_frontend(self):
        """The audio -> log-mel front end (runtime/mel.py) of this checkpoint."""
        from . import mel

        if self.is_random:
            return mel.synthesized(DEFAULT_STFT)
        config, weights = self.front_end_files()
        return mel.load_torch_file(weights, mel.stft_config(_read_json(config), str(config)))

    def weights_digest(self) -> str:
        """SHA-256 over the weight files: what an exported artifact records as its source."""
        if self.is_random:
            return f"random-init:seed={self.random_seed}"
        return cached_sha256([self.weights[key] for key in sorted(self.weights)])


def _local_or_hub(model: str, revision: str | None, weights: bool) -> Path:
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise CheckpointError(f"{model!r} is a file; pass the checkpoint folder that contains main_config.json")
    if not HUB_ID.match(model):
        raise CheckpointError(f"{model!r} is neither an existing folder nor a Hugging Face Hub id like 'org/name'")
    wanted = REQUIRED_FILES if weights else tuple(f for f in REQUIRED_FILES if f not in WEIGHT_FILES.values())
    return hub_download(model, wanted + OPTIONAL_FILES, "Tango checkpoint", revision)


def _text_encoder_dir(root: Path, name: str) -> Path:
    for candidate in (root / name, Path(name).expanduser()):
        if candidate.is_dir():
            return candidate
    if not HUB_ID.match(name):
        raise CheckpointError(f"{root / 'main_config.json'}: text_encoder_name {name!r} is not a folder or Hub id")
    return hub_download(name, TEXT_ENCODER_FILES, "text encoder config and tokenizer")


def _unet_config(root: Path, main: dict[str, Any]) -> dict[str, Any]:
    if main.get("unet_model_name"):
        raise CheckpointError(
            f"{root / 'main_config.json'}: unet_model_name={main['unet_model_name']!r} (a UNet initialised from "
            "another pre-trained model with extra group_in/group_out layers) is not a Tango release layout"
        )
    shipped = package_data("unet_config.json")
    relative = main.get("unet_model_config_path")
    if relative and (root / relative).is_file():
        config = _read_json(root / relative)
        differs = sorted(k for k in {*config, *shipped} if not k.startswith("_") and config.get(k) != shipped.get(k))
        if differs:
            warn(f"{root / relative}: the UNet config differs from Tango's in {differs}; using the checkpoint's")
        return config
    if relative != ORIGINAL_UNET_CONFIG_PATH:  # the releases name a path in the original source tree
        warn(f"{root / 'main_config.json'}: unet_model_config_path {relative!r} is not in the checkpoint; using "
             "the Tango UNet config shipped with tango-rt")
    return shipped


def _scheduler_config(root: Path, main: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint's own scheduler folder when it has one; never download stabilityai/stable-diffusion-2-1."""
    name = main.get("scheduler_name") or ""
    local = root / name / "scheduler" / "scheduler_config.json"
    return _read_json(local) if name and local.is_file() else default_scheduler_config()


def vocoder_config(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """HiFi-GAN 16 kHz / 64 mel defaults, updated with the keys a vocoder_config.json gives."""
    config, overrides = package_data("vocoder_config.json"), dict(overrides or {})
    if str(overrides.get("resblock", "1")) != "1":
        raise CheckpointError(f"vocoder_config.json: resblock {overrides['resblock']!r} is not supported (Tango's "
                              "HiFi-GAN uses type 1 residual blocks)")
    unknown = sorted(set(overrides) - set(config) - HIFIGAN_TRAINING_KEYS)
    if unknown:
        warn(f"vocoder_config.json: ignoring unknown key(s) {unknown}; read: {sorted(config)}")
    config.update({k: v for k, v in overrides.items() if k in config})
    return config


def load_checkpoint(model: str = DEFAULT_MODEL, revision: str | None = None, weights: bool = True) -> Checkpoint:
    """Resolve a Hub id (at `revision`: a branch, tag or commit), local folder or `random:full|tiny` to a
    Checkpoint; errors name what is missing. weights=False reads the configs only (a Hub id then downloads no
    weight file: `tango-rt info`)."""
    if model.startswith(RANDOM_PREFIX):
        return random_checkpoint(model[len(RANDOM_PREFIX) :])
    root = _local_or_hub(model, revision, weights)
    needed = REQUIRED_FILES if weights else [f for f in REQUIRED_FILES if f not in WEIGHT_FILES.values()]
    missing = [name for name in needed if not (root / name).is_file()]
    if missing:
        raise CheckpointError(
            f"{root} is not a Tango checkpoint: missing {', '.join(missing)} "
            f"(expected the original layout: {', '.join(REQUIRED_FILES)})"
        )
    main = _read_json(root / "main_config.json")
    if "text_encoder_name" not in main:
        raise CheckpointError(f"{root / 'main_config.json'} has no 'text_encoder_name'")
    text_dir = _text_encoder_dir(root, main["text_encoder_name"])
    vocoder_file = root / "vocoder_config.json"
    return Checkpoint(
        source=model,
        root=root,
        t5_config=_read_json(text_dir / "config.json"),
        unet_config=_unet_config(root, main),
        vae_config=_read_json(root / "vae_config.json"),
        vocoder_config=vocoder_config(_read_json(vocoder_file) if vocoder_file.is_file() else None),
        scheduler_config=_scheduler_config(root, main),
        tokenizer_dir=text_dir,
        weights={key: root / name for key, name in WEIGHT_FILES.items()} if weights else {},
        configs_only=not weights,
        revision=revision,
    )


def random_checkpoint(size: str = "full", seed: int = 0) -> Checkpoint:
    """The Tango architecture with random weights ("full" or "tiny"): for timing, which needs no trained weights."""
    models = package_data("random_models.json")
    if size not in models or size.startswith("_"):
        raise CheckpointError(f"unknown random model size {size!r}; choose 'full' or 'tiny'")
    spec = models[size]
    return Checkpoint(
        source=RANDOM_PREFIX + size,
        t5_config=spec["t5"],
        unet_config=spec["unet"] or package_data("unet_config.json"),
        vae_config=spec["vae"],
        vocoder_config=vocoder_config(spec["vocoder"]),
        scheduler_config=default_scheduler_config(),
        tokenizer_dir=None,
        random_seed=seed,
    )


def feature_channels(unet: dict, cut: int) -> int:
    """Channels of the hidden state entering the last up block's resnet `cut`: the second level's width (what the
    block before it outputs) at resnet 0, the first level's (the last up block's own) after."""
    channels = unet["block_out_channels"]
    return int(channels[1] if cut == 0 else channels[0])


def _full_res_heads(unet: dict) -> int:
    """Attention heads of the first down block (diffusers reads the legacy attention_head_dim as a head count when
    num_attention_heads is absent, as in Tango's SD-2-style config); 0 when that block has no attention."""
    if "CrossAttn" not in unet["down_block_types"][0]:
        return 0
    heads = unet.get("num_attention_heads") or unet.get("attention_head_dim") or 8
    return int(heads[0] if isinstance(heads, list | tuple) else heads)
