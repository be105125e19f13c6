"""Graph edits that apply the precision policy (`runtime/precision.py`) to exported graphs: FP16 conversion with
FP32 islands, INT8 dynamic quantization of the UNet's MatMul weights (ONNX Runtime, CPUs), and INT8 weight
compression of the UNet and T5 (OpenVINO, edge CPUs), and W8A8 static quantization of the UNet (every CPU
runtime and TensorRT's INT8 engines)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

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


SMOOTH_QUANT_ALPHA = 0.95  # NNCF's default for MatMuls; see the study in docs/performance.md (W8A8)


def w8a8_settings(component: str, node_names: Iterable[str], alpha: float = SMOOTH_QUANT_ALPHA,
                  backend_params: dict | None = None) -> dict:
    """nncf.quantize's keyword arguments for W8A8, whatever the model's form (ONNX here, OpenVINO's in
    studies/ov_native_int8): the performance preset (symmetric), the transformer model type with SmoothQuant at
    `alpha`, and the policy's float nodes ignored by name (NNCF anchors its patterns at the start, re.match; the
    policy's are searched, re.search)."""
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, AdvancedSmoothQuantParameters

    excluded = PRECISION_POLICY[component].float_nodes(node_names)
    advanced = AdvancedQuantizationParameters(smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=alpha),
                                              backend_params=backend_params or {})
    return {"preset": nncf.QuantizationPreset.PERFORMANCE, "model_type": nncf.ModelType.TRANSFORMER,
            "ignored_scope": nncf.IgnoredScope(names=excluded, validate=False), "advanced_parameters": advanced}


def quantize_w8a8(model_path: Path, component: str, feeds: list[dict], alpha: float = SMOOTH_QUANT_ALPHA):
    """A QDQ ONNX graph of an FP32 one: INT8 weights (per output channel) and activations (per tensor, ranges from
    `feeds`, the network's inputs along real trajectories: export/calibration.py), by NNCF's
    post-training quantization for transformer models (SmoothQuant with `alpha` moves activation outliers into the
    weights first; fast bias correction afterwards). QuantizeLinear / DequantizeLinear pairs are what OpenVINO
    turns into its INT8 kernels, ONNX Runtime's CPU provider into VNNI ones, and TensorRT builds INT8 engines from
    (explicit quantization). Every quantizer is symmetric (zero point 0, NNCF's performance preset): TensorRT's
    explicit quantization takes symmetric INT8 only. The precision policy's islands and its W8A8 exclusions stay
    float. The graph's external data is read where it lies. Returns the quantized ModelProto, every weight in memory."""
    import nncf
    import onnx
    from nncf.onnx.quantization.backend_parameters import BackendParameters

    folder = str(Path(model_path).parent.resolve())
    model = onnx.load(str(model_path), load_external_data=False)
    settings = w8a8_settings(component, (node.name for node in model.graph.node), alpha,
                             {BackendParameters.EXTERNAL_DATA_DIR: folder})
    quantized = nncf.quantize(model, nncf.Dataset(feeds), subset_size=len(feeds), **settings)
    onnx.load_external_data_for_model(quantized, folder)
    return quantized
