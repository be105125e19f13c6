"""Graph edits that apply the precision policy (`runtime/precision.py`) to exported ONNX graphs:
FP16 conversion with FP32 islands, and INT8 dynamic quantization of the UNet's MatMul weights."""

from __future__ import annotations

from ..runtime.precision import PRECISION_POLICY


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
