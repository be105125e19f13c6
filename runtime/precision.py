"""The precision policy: which parts of each network stay FP32 when the rest runs in FP16.

One policy, read by every reduced-precision path:
- the ONNX FP16 export (`export/precision.py`): nodes whose names match `onnx_nodes` keep FP32, with Casts
  around them; a `whole_graph_fp32` network is exported FP32;
- the INT8 dynamic quantization of the UNet for CPUs: the same nodes are left unquantized;
- the W8A8 quantization of the UNet and, on request, the decoders (`export/precision.quantize_w8a8`): the same nodes
  and `unquantized` stay float;
- the torch FP16 path (`backends/torch_backend.py`): modules whose qualified names match `torch_modules` run in
  FP32 through casting hooks; a `whole_graph_fp32` network keeps FP32 weights.
TensorRT engines take no part: TensorRT builds strongly typed networks, so an engine computes in the types its
ONNX graph declares, which means an engine built from an FP16 export inherits that export's FP32 islands.

Why these parts:
- text encoder: Flan-T5 overflows in FP16 (NaN after a few layers), so the whole network stays FP32.
- UNet: the timestep enters in FP32 (fractional Karras timesteps lose their fraction in FP16); the model sets
  `upcast_attention: true` (SD-2-style attention needs FP32 scores and softmax), and the
  sinusoidal time embedding takes sin/cos of t * freq (up to ~1000 rad), a phase FP16 cannot resolve. In torch,
  diffusers computes the time embedding in FP32 itself and SDPA's fused kernels accumulate the softmax in FP32,
  so no torch module needs hooks; the exported graph has no such guarantees, hence the ONNX node patterns.
- VAE decoder: the mid-block attention over 4096 tokens (single head) is the overflow risk.
- VAE encoder (audio in): the same mid-block attention at its lowest resolution, the same risk, the same island.
- vocoder: HiFi-GAN's convolutions are well-conditioned in FP16.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from .specs import TEXT_ENCODER, UNET, UNET_SHALLOW, VAE_DECODER, VAE_ENCODER, VOCODER

# The precision names, spelled once: what a backend's `precision` option, an export's manifest and bench variants say.
FP32, FP16, BF16 = "fp32", "fp16", "bf16"
INT8 = "int8"  # ONNX Runtime's dynamic quantization of the UNet's MatMul weights (an export precision)
INT8_WEIGHTS = "int8-weights"  # NNCF's INT8 weight compression into OpenVINO IR (an export precision)
W8A8 = "w8a8"  # weights and activations in INT8 (QDQ ONNX, NNCF post-training quantization): the UNet, and the
# decoders when asked (`export --w8a8-decoders`: 2.7-2.9x on OpenVINO with VNNI, studies/w8a8_cpu/results_decoders;
# slower than FP32 on ONNX Runtime's CPU provider)
W8A8_BF16 = f"{W8A8}+{BF16}"  # a bench variant: the W8A8 export on OpenVINO, BF16 where not quantized
EXPORT_PRECISIONS = (FP32, FP16, INT8, INT8_WEIGHTS, W8A8)
RUNTIME_PRECISIONS = (FP32, FP16, BF16)  # what a backend's precision option can ask for


@dataclass(frozen=True)
class PrecisionPolicy:
    """FP32 islands of one network, as ONNX node-name and torch module-name patterns (re.search), and the inputs
    that enter it in FP32 whatever its precision (the graphs' inputs are float32 by declaration; a torch FP16
    network would otherwise receive them cast to FP16)."""

    whole_graph_fp32: bool = False
    onnx_nodes: tuple[str, ...] = ()
    torch_modules: tuple[str, ...] = ()
    fp32_inputs: tuple[str, ...] = ()
    unquantized: tuple[str, ...] = ()  # node patterns W8A8 also leaves in float, besides the islands

    def float_nodes(self, node_names: Iterable[str]) -> list[str]:
        """ONNX nodes W8A8 leaves in float: the FP32 islands and `unquantized` (what its manifest entry counts)."""
        return [n for n in node_names if self.is_island(n) or any(re.search(p, n) for p in self.unquantized)]

    def fp32_nodes(self, node_names: Iterable[str]) -> list[str]:
        """ONNX nodes (names as the TorchScript exporter writes module scopes) that stay FP32 under FP16."""
        return [n for n in node_names if self.whole_graph_fp32 or self.is_island(n)]

    def is_island(self, node_name: str) -> bool:
        """A node of the FP32 islands proper (not the whole-graph rule, which is about FP16 overflow only)."""
        return any(re.search(p, node_name) for p in self.onnx_nodes)

    def fp32_modules(self, module_names: Iterable[str]) -> list[str]:
        """torch modules (qualified names from named_modules) that run in FP32 inside an FP16 network."""
        return [n for n in module_names if any(re.search(p, n) for p in self.torch_modules)]


UNET_POLICY = PrecisionPolicy(
    onnx_nodes=(
        r"/time_proj/",  # sinusoidal timestep embedding
        r"/attn[12]/(MatMul|Softmax|Mul|Div|Sqrt|Add|Where)(_\d+)?$",  # q*s, k*s, q@k, +mask, softmax, @v
    ),
    # Karras-sigma timesteps are fractional (987.3, ...): FP16 keeps 0.5 of resolution above 512, so an FP16
    # timestep would be another timestep than the FP32 path and the exported graphs see
    fp32_inputs=("timestep",),
    # W8A8: the time embedding's two Linear layers act on one vector per row (no GEMM worth INT8) and carry the
    # timestep's fine structure into every resnet; an INT8 range over all timesteps would coarsen it
    unquantized=(r"/time_embedding/",),
)
PRECISION_POLICY: dict[str, PrecisionPolicy] = {
    TEXT_ENCODER: PrecisionPolicy(whole_graph_fp32=True),
    UNET: UNET_POLICY,
    VAE_DECODER: PrecisionPolicy(
        onnx_nodes=(r"/mid_block/attentions\.\d+/",),
        torch_modules=(r"(^|\.)decoder\.mid_block\.attentions\.\d+$",),
    ),
    VOCODER: PrecisionPolicy(),
    UNET_SHALLOW: UNET_POLICY,  # a part of the UNet's graph, with its node names: the same islands
    VAE_ENCODER: PrecisionPolicy(
        onnx_nodes=(r"/mid_block/attentions\.\d+/",),
        torch_modules=(r"(^|\.)encoder\.mid_block\.attentions\.\d+$",),
    ),
}


W8A8_NETWORKS = (UNET, UNET_SHALLOW)  # what a W8A8 export quantizes always
W8A8_DECODERS = (VAE_DECODER, VOCODER)  # and on request: T5 stays FP32 (whole-graph rule, and 0.2 s of a clip)


def component_precision(precision: str, name: str) -> str:
    """What a model-wide precision means for one network: reduced precisions spare whole-FP32 networks (T5);
    int8 is the UNet's MatMul weights only (ONNX Runtime on CPUs); int8-weights stores the UNet's and T5's
    weights as INT8 with FP32 / BF16 arithmetic (OpenVINO), which has no FP16 overflow to fear in T5; w8a8 is
    what a W8A8 export may quantize (the UNet and its shallow branch always, the decoders on request: the export
    quantizes them in a second pass, after an FP32 one), the text encoder FP32 (or BF16 where a backend is asked
    for it)."""
    if precision == "int8-weights":
        return precision if name in (UNET, UNET_SHALLOW, TEXT_ENCODER) else "fp32"
    if PRECISION_POLICY[name].whole_graph_fp32:
        return "fp32"
    if precision == "int8":
        return "int8-dynamic" if name in (UNET, UNET_SHALLOW) else "fp32"
    if precision == W8A8:
        return W8A8 if name in W8A8_NETWORKS + W8A8_DECODERS else FP32
    return precision
