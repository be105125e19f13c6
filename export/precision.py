"""The precision policy: which parts of each network stay FP32 under reduced precision, and the graph edits.

One policy, three consumers: the ONNX FP16 conversion (blocked nodes keep FP32, with Casts around them), the
INT8 dynamic quantization of the UNet for CPUs (the same nodes are excluded), and the TensorRT builder
(matching layers get an FP32 precision constraint). Node names are the module scopes the
TorchScript exporter writes (`/unet/down_blocks.0/attentions.0/transformer_blocks.0/attn1/Softmax`), and
TensorRT names layers after ONNX nodes, so one set of patterns serves both.

Why these nodes (DESIGN.md, "Known traps"):
- text encoder: Flan-T5 overflows in FP16 (NaN after a few layers): the whole graph stays FP32.
- UNet: `upcast_attention: true` - SD-2-style attention needs FP32 scores and softmax; and the sinusoidal time
  embedding takes sin/cos of t * freq (up to ~1000 rad), whose phase FP16 cannot resolve.
- VAE decoder: the mid-block attention over 4096 tokens (single head) is the overflow risk.
- vocoder: HiFi-GAN's convolutions are well-conditioned in FP16.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from ..runtime.specs import TEXT_ENCODER, UNET, VAE_DECODER, VOCODER


@dataclass(frozen=True)
class PrecisionPolicy:
    whole_graph_fp32: bool = False
    fp32_patterns: tuple[str, ...] = ()

    def keeps_fp32(self, node_name: str) -> bool:
        return self.whole_graph_fp32 or any(re.search(p, node_name) for p in self.fp32_patterns)

    def fp32_nodes(self, node_names: Iterable[str]) -> list[str]:
        return [name for name in node_names if self.keeps_fp32(name)]


PRECISION_POLICY: dict[str, PrecisionPolicy] = {
    TEXT_ENCODER: PrecisionPolicy(whole_graph_fp32=True),
    UNET: PrecisionPolicy(
        fp32_patterns=(
            r"/time_proj/",  # sinusoidal timestep embedding
            r"/attn[12]/(MatMul|Softmax|Mul|Div|Sqrt|Add|Where)(_\d+)?$",  # q*s, k*s, q@k, +mask, softmax, @v
        )
    ),
    VAE_DECODER: PrecisionPolicy(fp32_patterns=(r"/mid_block/attentions\.\d+/",)),
    VOCODER: PrecisionPolicy(),
}


def convert_to_fp16(model_path: str, component: str):
    """FP16 copy of an FP32 ONNX graph with the policy's nodes kept FP32 and float32 inputs/outputs.

    Uses onnxruntime's maintained converter (Casts inserted around blocked nodes; shape inference by path,
    so graphs over 2 GB work). Returns (ModelProto, names of the nodes kept FP32).
    """
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    policy = PRECISION_POLICY[component]
    names = [n.name for n in onnx.load(model_path, load_external_data=False).graph.node]
    blocked = policy.fp32_nodes(names)
    model = convert_float_to_float16(model_path, keep_io_types=True, node_block_list=blocked)
    OnnxModel.graph_topological_sort(model.graph)  # the converter appends its input Casts at the end
    return model, blocked


def quantize_int8(model_path: str, output_path: str, component: str) -> list[str]:
    """INT8 dynamic quantization (onnxruntime.quantization) of the MatMul weights, for CPUs with VNNI / AMX.

    Convolutions stay FP32: ONNX Runtime's ConvInteger kernel is far slower than its FP32 convolution on CPU
    (measured: a full-size UNet step went from 5.6 s to 14 s). Activations are quantized per call (uint8),
    weights per tensor (int8). The policy's FP32 nodes (attention scores, timestep embedding) are excluded.
    Returns the excluded node names.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    names = [n.name for n in onnx.load(model_path, load_external_data=False).graph.node]
    excluded = PRECISION_POLICY[component].fp32_nodes(names)
    quantize_dynamic(
        model_path,
        output_path,
        op_types_to_quantize=["MatMul"],
        weight_type=QuantType.QInt8,
        nodes_to_exclude=excluded,
        use_external_data_format=True,
    )
    return excluded
