"""Graph edits that apply the precision policy (`runtime/precision.py`) to exported graphs: FP16 conversion with
FP32 islands, INT8 dynamic quantization of the UNet's MatMul weights (ONNX Runtime, CPUs), and INT8 weight
compression of the UNet and T5 (OpenVINO, edge CPUs)."""

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


def compress_weights_int8(onnx_path, target) -> int:
    """OpenVINO IR of an ONNX graph with its MatMul / Convolution / embedding weights stored as INT8.

    NNCF's weight compression (INT8_ASYM: per-output-channel scale and zero point) leaves activations in the
    precision the runtime chooses (FP32, or BF16 with that hint); the folder shrinks about 4x where weights
    dominate. Nodes the precision policy keeps in FP32 (timestep embedding, attention scores) are left alone.
    Returns how many weight tensors were compressed."""
    import nncf
    import openvino as ov

    model = ov.convert_model(str(onnx_path))
    component = target.stem
    policy = PRECISION_POLICY[component]
    keep = [op.get_friendly_name() for op in model.get_ops() if policy.is_island(op.get_friendly_name())]
    ignored = nncf.IgnoredScope(names=keep, validate=False) if keep else None
    compressed = nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM, ignored_scope=ignored)
    after = sum(1 for op in compressed.get_ops() if op.get_type_name() == "Constant"
                and op.get_element_type() in (ov.Type.u8, ov.Type.i8))
    ov.save_model(compressed, str(target), compress_to_fp16=False)
    return after
