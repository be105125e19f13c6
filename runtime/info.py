"""`tango-rt info`: what a model is made of, without loading its weights."""

from __future__ import annotations

from typing import Any

from .artifacts import artifact_root, open_artifact
from .checkpoint import load_checkpoint
from .config import PipelineConfig
from .specs import COMPONENTS


def _shapes(config: PipelineConfig) -> str:
    mel = config.mel_frames()
    samples = config.num_samples(mel)
    return (
        f"latents {config.latent_shape(1)[1:]}, mel ({mel}, {config.mel_bins}), "
        f"waveform {samples} samples = {samples / config.sample_rate:.2f} s at {config.sample_rate} Hz"
    )


def describe(model: str) -> dict[str, Any]:
    """Summary text plus machine-readable facts: parameter counts come from the architecture on torch's meta
    device (no weights read, no memory used); an exported folder reports its manifest instead."""
    root = artifact_root(model)
    if root is not None:
        artifact = open_artifact(root)
        rows = [f"{n:<13} {e['format']:<9} {e.get('precision', '?'):<5} {e['file']}" for n, e in
                artifact.manifest["components"].items()]
        summary = "\n".join([f"exported folder {model} (from {artifact.source_model})", *rows,
                             _shapes(artifact.pipeline_config)])
        return {"summary": summary, "manifest": artifact.manifest, "configs": artifact.manifest["pipeline"]}

    import torch

    from .backends.torch_models import ModelBuilder, parameter_count

    checkpoint = load_checkpoint(model, weights=False)  # a Hub id: configs only, not 5 GB of weights
    with torch.device("meta"):
        modules = ModelBuilder(checkpoint, load_weights=False).build()
    params = {name: parameter_count(modules[name]) for name in COMPONENTS}
    rows = [f"{name:<13} {count / 1e6:9.2f} M parameters" for name, count in params.items()]
    weights = ("not read (configs only)" if checkpoint.configs_only else
               {k: str(v) for k, v in checkpoint.weights.items()} or "random initialisation")
    summary = "\n".join([f"Tango checkpoint {model}", *rows, f"{'total':<13} {sum(params.values()) / 1e6:9.2f} M",
                         _shapes(checkpoint.pipeline_config()), f"weights: {weights}"])
    configs = {
        "text_encoder": checkpoint.t5_config,
        "unet": checkpoint.unet_config,
        "vae": checkpoint.vae_config,
        "vocoder": checkpoint.vocoder_config,
        "scheduler": checkpoint.scheduler_config,
        "pipeline": checkpoint.pipeline_config().to_dict(),
    }
    return {"summary": summary, "parameters": params, "configs": configs}
