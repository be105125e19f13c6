"""The shallow UNet branch as an exported network: cut out of the traced UNet graph, sharing the UNet's weights.

The traced UNet has two outputs, `noise_pred` and `deep_feature` (the hidden state entering the last up block at
the cut, runtime/config.py CACHE_CUT). The shallow network is the part of that very graph that computes
`noise_pred` once `deep_feature` is given: onnx's Extractor takes the nodes between the inputs (the UNet's four
and `deep_feature`) and `noise_pred`, which are the time embedding, conv_in, the first down block's pairs whose
outputs the last up block reads as skips, the last up block from the cut on and conv_out; the deep path is left
out because everything it fed into the cut now comes from the input. So it is the UNet's own computation by
construction, with the same node names (the precision policy's islands apply as to the UNet).

Its weights are a subset of the UNet's (a few percent). Where the exported UNet keeps its weights in an external
data file (the full-size model), the shallow graph's initializers are pointed into that same file, each after
checking its bytes are the UNet's, as the fused-attention graphs do: 1 MB more on disk instead of a second copy.
"""

from __future__ import annotations

from pathlib import Path

from ..runtime.specs import ComponentSpec


def extract_shallow(traced_unet: Path, target: Path, unet: ComponentSpec, shallow: ComponentSpec) -> None:
    """Write `target`: the part of the traced UNet graph from the shallow network's inputs to `noise_pred`."""
    import onnx
    from onnx.utils import Extractor

    model = onnx.load(str(traced_unet), load_external_data=False)  # external weights stay references
    feature = shallow.input_names[-1]
    if feature not in unet.output_names or shallow.output_names[0] not in unet.output_names:
        raise ValueError(f"{shallow.name}: expected the UNet's outputs {unet.output_names} to include {feature}")
    extracted = Extractor(model).extract_model(shallow.input_names, shallow.output_names)
    extracted.graph.name = shallow.name
    onnx.save_model(extracted, str(target))  # beside the traced graph: its external data references still hold


def _external(tensor) -> dict[str, str]:
    return {entry.key: entry.value for entry in tensor.external_data}


def share_weights(graph: Path, unet_graph: Path) -> int:
    """Point the initializers of `graph` (the shallow network, weights embedded) into the external data file of
    `unet_graph` where their bytes are the UNet's; returns how many now live there. A UNet without external data
    (small models) leaves the graph as it is."""
    import onnx
    from onnx import numpy_helper

    source = onnx.load(str(unet_graph), load_external_data=False)
    stored = {t.name: t for t in source.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL}
    if not stored:
        return 0
    model = onnx.load(str(graph))
    shared = 0
    for tensor in model.graph.initializer:
        twin = stored.get(tensor.name)
        if twin is None or twin.data_type != tensor.data_type or list(twin.dims) != list(tensor.dims):
            continue
        where = _external(twin)
        with (unet_graph.parent / where["location"]).open("rb") as data:
            data.seek(int(where.get("offset", 0)))
            raw = data.read(int(where["length"]))
        if raw != numpy_helper.to_array(tensor).tobytes():
            continue
        for field in ("raw_data", "float_data", "int32_data", "int64_data", "double_data"):
            tensor.ClearField(field)
        tensor.data_location = onnx.TensorProto.EXTERNAL
        del tensor.external_data[:]
        for key in ("location", "offset", "length"):
            if key in where:
                tensor.external_data.add(key=key, value=where[key])
        shared += 1
    onnx.save_model(model, str(graph))
    return shared
