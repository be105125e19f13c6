"""Analytic FLOPs of the UNet, full and shallow calls, from its configuration: what `bench` reports per clip.

Counted as torch's FlopCounterMode counts (and tested against it, tests/test_feature_cache.py): 2 FLOPs per
multiply-add of every convolution, linear layer and attention product; normalisations, activations and
elementwise work are left out (a few percent of the time on any device). Per row (one clip of a CFG batch):

- ResnetBlock2D(c_in -> c_out) at H x W: 3x3 c_in -> c_out, 3x3 c_out -> c_out, a 1x1 shortcut when the widths
  differ, and the time embedding's projection (temb -> c_out);
- Transformer2DModel (linear projections, one BasicTransformerBlock) over N = H x W tokens of width C with T text
  tokens of width E: proj_in and proj_out (N C^2 each), self-attention (q, k, v, out: 4 N C^2; scores and weighted
  sum: 2 N^2 C), cross-attention (q, out: 2 N C^2; k, v: 2 T E C; scores and sum: 2 N T C), GEGLU feed-forward
  (C -> 8C, 4C -> C: 12 N C^2);
- down- and upsampling convolutions (3x3, at the output resolution), conv_in, conv_out, the time embedding MLP.

The shallow call (runtime/feature_cache.py) is conv_in, the first `skips` (resnet, attention) pairs of the first
down block, the last up block from resnet `cut` on, conv_out and the time embedding.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class UNetShape:
    """The architecture facts FLOPs need, read from a UNet2DConditionModel config (kept in PipelineConfig)."""

    in_channels: int
    out_channels: int
    block_out_channels: tuple[int, ...]
    layers_per_block: int
    cross_attention: tuple[bool, ...]  # per down level: CrossAttnDownBlock2D (the up path mirrors it)
    cross_attention_dim: int
    time_embed_dim: int

    @classmethod
    def from_config(cls, unet: Mapping[str, Any]) -> UNetShape:
        channels = tuple(int(c) for c in unet["block_out_channels"])
        return cls(int(unet["in_channels"]), int(unet["out_channels"]), channels, int(unet["layers_per_block"]),
                   tuple("CrossAttn" in t for t in unet["down_block_types"]), int(unet["cross_attention_dim"]),
                   4 * channels[0])

    def to_dict(self) -> dict[str, Any]:
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "block_out_channels": list(self.block_out_channels), "layers_per_block": self.layers_per_block,
                "cross_attention": list(self.cross_attention), "cross_attention_dim": self.cross_attention_dim,
                "time_embed_dim": self.time_embed_dim}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> UNetShape:
        return cls(data["in_channels"], data["out_channels"], tuple(data["block_out_channels"]),
                   data["layers_per_block"], tuple(data["cross_attention"]), data["cross_attention_dim"],
                   data["time_embed_dim"])


def _conv3(pixels: int, c_in: int, c_out: int) -> int:
    return 2 * pixels * 9 * c_in * c_out


def _resnet(pixels: int, c_in: int, c_out: int, temb: int) -> int:
    shortcut = 2 * pixels * c_in * c_out if c_in != c_out else 0
    return _conv3(pixels, c_in, c_out) + _conv3(pixels, c_out, c_out) + shortcut + 2 * temb * c_out


def _transformer(tokens: int, width: int, text_len: int, text_width: int) -> int:
    n, c = tokens, width
    projections = 2 * (2 * n * c * c)
    self_attention = 2 * (4 * n * c * c) + 2 * (2 * n * n * c)
    cross_attention = 2 * (2 * n * c * c) + 2 * (2 * text_len * text_width * c) + 2 * (2 * n * text_len * c)
    feed_forward = 2 * (12 * n * c * c)
    return projections + self_attention + cross_attention + feed_forward


def unet_flops(shape: UNetShape, frames: int, bins: int, text_len: int, cut: int | None = None) -> int:
    """FLOPs of one UNet call per row at `frames` x `bins` latents and `text_len` tokens; with `cut`, of the
    shallow call that enters the last up block at its resnet `cut` (0: the whole last up block)."""
    c, layers, temb = shape.block_out_channels, shape.layers_per_block, shape.time_embed_dim
    levels = len(c)
    pixels = [(frames >> i) * (bins >> i) for i in range(levels)]

    def attention(level: int) -> int:
        """A level's transformer (after each resnet, where the level has cross-attention blocks)."""
        if not shape.cross_attention[level]:
            return 0
        return _transformer(pixels[level], c[level], text_len, shape.cross_attention_dim)

    total = 2 * (c[0] * temb + temb * temb)  # time embedding MLP
    total += _conv3(pixels[0], shape.in_channels, c[0]) + _conv3(pixels[0], c[0], shape.out_channels)
    if cut is not None:  # the shallow call: the first down block's first skips, the last up block from `cut`
        skips = layers - cut
        for _ in range(skips):
            total += _resnet(pixels[0], c[0], c[0], temb) + attention(0)
        for j in range(cut, layers + 1):
            skip = c[0]  # every skip of the last up block has the first level's width
            c_in = (c[1] if j == 0 else c[0]) + skip
            total += _resnet(pixels[0], c_in, c[0], temb) + attention(0)
        return total
    for i in range(levels):  # down path
        for j in range(layers):
            total += _resnet(pixels[i], c[i - 1] if (i and j == 0) else c[i], c[i], temb)
            total += attention(i)
        if i < levels - 1:
            total += _conv3(pixels[i + 1], c[i], c[i])
    total += 2 * _resnet(pixels[-1], c[-1], c[-1], temb) + _transformer(pixels[-1], c[-1], text_len,
                                                                          shape.cross_attention_dim)  # mid block
    for i in range(levels):  # up path: level levels - 1 - i
        level = levels - 1 - i
        out, prev = c[level], c[min(level + 1, levels - 1)]
        for j in range(layers + 1):
            skip = c[max(level - 1, 0)] if j == layers else out
            total += _resnet(pixels[level], (prev if j == 0 else out) + skip, out, temb)
            total += attention(level)
        if level > 0:
            total += _conv3(pixels[level - 1], out, out)
    return total


def run_gflop(shape: UNetShape, calls: list[tuple[str, bool]], rows: int, frames: int, bins: int, text_len: int,
              cut: int) -> float:
    """GFLOP of a run's UNet calls (UNetPlan.calls) for `rows` clips: a guided call runs twice the rows."""
    full, shallow = unet_flops(shape, frames, bins, text_len), unet_flops(shape, frames, bins, text_len, cut)
    return sum((full if kind == "full" else shallow) * rows * (2 if guided else 1) for kind, guided in calls) / 1e9
