"""Fused attention for ONNX Runtime: the exported UNet's unmasked attention as one `MultiHeadAttention` node.

The TorchScript exporter writes torch's scaled_dot_product_attention as separate ops (head reshapes, q*s, k*s,
q @ k^T, Softmax, @ v), so ONNX Runtime materialises the full score matrix: for the full-size UNet's self-attention
that is (2 x 5) x 4096 x 4096 floats, 0.6 GiB per tensor and ~2.2 GB at the peak of a step, held by the CPU
arena between calls. ONNX Runtime's `com.microsoft.MultiHeadAttention` contrib op runs the same attention with its CPU
flash-attention kernel (tiles sized to the L2 cache; no score matrix) when there is no mask, bias or past state.

ONNX Runtime ships a UNet fusion (`onnxruntime.transformers.optimizer`, model_type "unet"), but in onnxruntime
1.32 it fails on our graph under numpy 2 (`int()` of a one-element array in `get_num_heads`), and it fuses with
GPU layouts in mind. This pass matches the exporter's pattern exactly and leaves anything else alone: an
attention with a mask (the UNet's cross-attention, which attends over the prompt's few tokens) does not match.
The graph keeps its initializers as they were, so a graph with external data can share its data file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MS_DOMAIN = "com.microsoft"
ORT_SUFFIX = ".ort.onnx"  # unet.onnx -> unet.ort.onnx, next to it


@dataclass(frozen=True)
class AttentionMatch:
    """One matched attention: its Q/K/V projections (B, S, D), head count and the (B, S, D) output name."""

    scope: str
    query: str
    key: str
    value: str
    heads: int
    output: str


class _Graph:
    """Producer / consumer lookups over a GraphProto's nodes."""

    def __init__(self, graph):
        self.producer = {out: node for node in graph.node for out in node.output}
        self.consumers: dict[str, list] = {}
        for node in graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.constants = {init.name: init for init in graph.initializer}

    def parent(self, node, index: int, op_type: str):
        """The node producing input `index` of `node`, if it is an `op_type`."""
        if index >= len(node.input):
            return None
        parent = self.producer.get(node.input[index])
        return parent if parent is not None and parent.op_type == op_type else None

    def only_child(self, node, op_type: str):
        children = self.consumers.get(node.output[0], [])
        return children[0] if len(children) == 1 and children[0].op_type == op_type else None

    def constant_int(self, name: str) -> int | None:
        """The value of a one-element integer constant (Constant node or initializer), else None."""
        from onnx import numpy_helper

        node = self.producer.get(name)
        if node is not None and node.op_type == "Constant":
            tensor = next((a.t for a in node.attribute if a.name == "value"), None)
        else:
            tensor = self.constants.get(name)
        if tensor is None:
            return None
        array = numpy_helper.to_array(tensor)
        return int(array.reshape(-1)[0]) if array.size == 1 and array.dtype.kind in "iu" else None


def _transpose_perm(node) -> list[int]:
    return next((list(a.ints) for a in node.attribute if a.name == "perm"), [])


def _heads_from_reshape(g: _Graph, reshape) -> int | None:
    """Heads from the (B, S, heads, head_dim) shape the exporter builds with a Concat of four parts."""
    concat = g.parent(reshape, 1, "Concat")
    if concat is None or len(concat.input) != 4:
        return None
    heads = g.constant_int(concat.input[2])
    return heads if heads and heads > 0 else None


def _head_input(g: _Graph, node, index: int, perm: list[int]):
    """Follow `Mul? <- Transpose(perm) <- Reshape(x)` up from input `index` of `node`; (x, reshape) or None."""
    parent = g.producer.get(node.input[index])
    if parent is not None and parent.op_type == "Mul":  # SDPA's sqrt(scale) on q and on k
        parent = g.parent(parent, 0, "Transpose")
    if parent is None or parent.op_type != "Transpose" or _transpose_perm(parent) != perm:
        return None
    reshape = g.parent(parent, 0, "Reshape")
    return (reshape.input[0], reshape) if reshape is not None else None


def match_attention(g: _Graph, softmax) -> AttentionMatch | None:
    """The exporter's unmasked SDPA around one Softmax, or None when anything differs (a mask Add, a bias)."""
    scores = g.parent(softmax, 0, "MatMul")
    weighted = g.only_child(softmax, "MatMul")
    if scores is None or weighted is None or weighted.input[0] != softmax.output[0]:
        return None
    q = _head_input(g, scores, 0, [0, 2, 1, 3])
    k = _head_input(g, scores, 1, [0, 2, 3, 1])
    v = _head_input(g, weighted, 1, [0, 2, 1, 3])
    merge = g.only_child(weighted, "Transpose")
    reshape = g.only_child(merge, "Reshape") if merge is not None and _transpose_perm(merge) == [0, 2, 1, 3] else None
    if None in (q, k, v, reshape):
        return None
    heads = _heads_from_reshape(g, q[1])
    if heads is None or heads != _heads_from_reshape(g, k[1]) or heads != _heads_from_reshape(g, v[1]):
        return None
    return AttentionMatch(softmax.name.rsplit("/", 1)[0], q[0], k[0], v[0], heads, reshape.output[0])


def _remove_dead_nodes(graph) -> None:
    """Drop nodes whose outputs nothing reads (the unfused attention's remains), repeatedly."""
    keep_names = {o.name for o in graph.output}
    while True:
        used = {name for node in graph.node for name in node.input} | keep_names
        dead = [i for i, node in enumerate(graph.node) if not any(o in used for o in node.output if o)]
        if not dead:
            return
        for i in reversed(dead):
            del graph.node[i]


def fuse_attention(model) -> list[AttentionMatch]:
    """Replace every matched attention in `model` (a ModelProto, edited in place) by a MultiHeadAttention node.

    The node's default scale, 1/sqrt(head_dim), is the rule the exported graph computes (torch's SDPA default).
    Returns the matches, in graph order."""
    from onnx import helper

    g = _Graph(model.graph)
    matches = [m for node in model.graph.node if node.op_type == "Softmax" and (m := match_attention(g, node))]
    after = {}  # the old tail's renamed output -> the fused node that replaces the tail, inserted after it
    for m in matches:
        tail = g.producer[m.output]
        tail.output[0] = f"{m.output}.unfused"  # the old tail becomes dead once nothing reads it
        after[tail.output[0]] = helper.make_node("MultiHeadAttention", [m.query, m.key, m.value], [m.output],
                                           name=f"{m.scope}/MultiHeadAttention", domain=MS_DOMAIN,
                                           num_heads=m.heads)
    nodes = []
    for node in model.graph.node:  # keeps the node list topologically sorted
        nodes.append(node)
        if node.output and node.output[0] in after:
            nodes.append(after[node.output[0]])
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    _remove_dead_nodes(model.graph)
    if matches and not any(op.domain == MS_DOMAIN for op in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    return matches


def write_ort_graph(graph: Path) -> tuple[Path, int] | None:
    """`<name>.ort.onnx` beside `graph` with its attention fused; None when nothing matched (no file written).

    Initializers stored as external data keep their references, so the fused graph shares the data file of
    `graph` (a 3.5 GB UNet costs 1 MB more on disk); small graphs embed their weights again."""
    import onnx

    model = onnx.load(str(graph), load_external_data=False)
    matches = fuse_attention(model)
    if not matches:
        return None
    target = graph.with_name(graph.name[: -len(".onnx")] + ORT_SUFFIX)
    onnx.save_model(model, str(target))  # external initializers stay references into the shared data file
    onnx.checker.check_model(str(target))
    return target, len(matches)
