"""scOT, the Swin-V2 U-Net of Poseidon (Herde et al., NeurIPS 2024), channels-last.

.. code-block:: text

    x (B, H, W, C_in) ─ patch embedding (p×p conv) ─ norm
      ─ encoder: stage s = 0..S-1 of depth_s Swin-V2 blocks at D·2^s channels;
                 patch merging (2×2 → 2D) between stages, its input = blocks + stage input
      ─ skips: each stage's output through skip_blocks[s] ConvNeXt blocks
      ─ decoder: from the deepest skip, stages s = S-1..0 of depth_s Swin-V2 blocks, patch
                 expansion (D·2^s → D·2^(s-1) on a 2× grid) and the skip of stage s-1 *added*
      ─ patch recovery (p×p transposed conv, then a 5×5 conv) ─ (B, H, W, C_out)

A Swin-V2 block is post-norm: ``x + norm(attention(x))`` then ``x + norm(mlp(x))``, with the
windowed scaled-cosine attention of :class:`~nopx.layers.window_attention.WindowAttention`;
odd blocks shift their windows by half a window. Every layer norm is a
:class:`~nopx.layers.conditional_norm.ConditionalLayerNorm` whose scale and shift are affine
in the lead time ``t``, so the model is called ``model(x, t)`` and is continuous in ``t``;
``time_conditioning=False`` makes them plain layer norms and the call ``model(x)``.

Sizes (``size=``), all with patch 4, window 16, heads (3, 6, 12, 24), skip ConvNeXt blocks
(2, 2, 2, 0), MLP ratio 4; parameter counts for 4 → 4 channels, time-conditioned:

======  ==========  ==============  =============
size    embed dim   depths          parameters
======  ==========  ==============  =============
``T``   48          (4, 4, 4, 4)    20,774,444
``B``   96          (8, 8, 8, 8)    157,729,988
``L``   192         (8, 8, 8, 8)    628,575,524
======  ==========  ==============  =============

the published 20.8 M / 158 M / 629 M to the digits given (4 input channels; the
embedding and recovery are a few thousand parameters). Any grid works: each stage's window
shrinks to its grid when that is smaller (then without shift), odd sizes are padded and
cropped. Poseidon instead resamples every input to its fixed 128² in Fourier space;
resample outside the model to reproduce that.

Known deviations from the reference: the time-conditioned norms start close to plain layer
norms (see :mod:`nopx.layers.conditional_norm`), and the other weights use flax's default
initialisers rather than N(0, 0.02²). Parameter names and shapes follow Poseidon's modules
one to one, for a checkpoint converter.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from nopx.layers import ChannelMLP
from nopx.layers.checks import check_positive
from nopx.layers.conditional_norm import ConditionalLayerNorm
from nopx.layers.window_attention import WindowAttention, window_and_shift
from nopx.models.registry import register

SIZES: dict[str, dict[str, Any]] = {
    "T": {"hidden_channels": 48, "depths": (4, 4, 4, 4)},
    "B": {"hidden_channels": 96, "depths": (8, 8, 8, 8)},
    "L": {"hidden_channels": 192, "depths": (8, 8, 8, 8)},
}
_COMMON: dict[str, Any] = {"n_heads": (3, 6, 12, 24), "skip_blocks": (2, 2, 2, 0),
                           "patch_size": 4, "window_size": 16, "mlp_ratio": 4.0}


class SwinV2Block(nnx.Module):
    """Post-norm Swin-V2 block on a token grid ``(B, H, W, C)``, norms conditioned on ``t``."""

    def __init__(self, channels: int, n_heads: int, *, mlp_ratio: float, conditioned: bool,
                 rngs: nnx.Rngs) -> None:
        self.attention = WindowAttention(channels, n_heads, rngs=rngs)
        self.attention_norm = ConditionalLayerNorm(channels, conditioned=conditioned, rngs=rngs)
        self.mlp = ChannelMLP(channels, channels, int(mlp_ratio * channels), rngs=rngs)
        self.mlp_norm = ConditionalLayerNorm(channels, conditioned=conditioned, rngs=rngs)

    def __call__(self, x: jax.Array, t: jax.Array | None, window_size: int,
                 shifted: bool) -> jax.Array:
        """``(B, H, W, C) -> (B, H, W, C)``; the window shrinks to a smaller grid."""
        window, shift = window_and_shift(x.shape[1:3], window_size, shifted)
        x = x + self.attention_norm(self.attention(x, window, shift), t)
        return x + self.mlp_norm(self.mlp(x), t)


class SwinV2Stage(nnx.Module):
    """``depth`` Swin-V2 blocks, alternately plain and shifted.

    ``first_shifted``: whether the first block shifts (Poseidon's decoder stages run the
    encoder's shift pattern backwards, so with an even depth they start shifted).
    """

    def __init__(self, channels: int, n_heads: int, depth: int, *, first_shifted: bool,
                 mlp_ratio: float, conditioned: bool, rngs: nnx.Rngs) -> None:
        self.blocks = nnx.List([
            SwinV2Block(channels, n_heads, mlp_ratio=mlp_ratio, conditioned=conditioned,
                        rngs=rngs) for _ in range(depth)])
        self.shifted = tuple((i % 2 == 1) != first_shifted for i in range(depth))

    def __call__(self, x: jax.Array, t: jax.Array | None, window_size: int) -> jax.Array:
        """``(B, H, W, C) -> (B, H, W, C)``."""
        for block, shifted in zip(self.blocks, self.shifted):
            x = block(x, t, window_size, shifted)
        return x


class PatchMerging(nnx.Module):
    """2×2 neighbourhoods to one token: ``(B, H, W, C) -> (B, ⌈H/2⌉, ⌈W/2⌉, 2C)``.

    The four tokens are concatenated in the order (0,0), (1,0), (0,1), (1,1) (row, column
    offset), mapped by ``Linear(4C → 2C)`` without bias, then normalised. Odd sizes are
    zero-padded at the end.
    """

    def __init__(self, channels: int, *, conditioned: bool, rngs: nnx.Rngs) -> None:
        self.reduction = nnx.Linear(4 * channels, 2 * channels, use_bias=False, rngs=rngs)
        self.norm = ConditionalLayerNorm(2 * channels, conditioned=conditioned, rngs=rngs)

    def __call__(self, x: jax.Array, t: jax.Array | None) -> jax.Array:
        """``(B, H, W, C) -> (B, ⌈H/2⌉, ⌈W/2⌉, 2C)``."""
        x = jnp.pad(x, ((0, 0), (0, x.shape[1] % 2), (0, x.shape[2] % 2), (0, 0)))
        x = jnp.concatenate([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2],
                             x[:, 1::2, 1::2]], axis=-1)
        return self.norm(self.reduction(x), t)


class PatchExpansion(nnx.Module):
    """One token to a 2×2 block: ``(B, h, w, C) -> (B, H, W, C/2)`` with ``H ≤ 2h, W ≤ 2w``.

    ``Linear(C → 2C)`` without bias, each token's ``2C`` features read as a 2×2 block (row
    offset first) of ``C/2``, cropped to the requested grid, normalised, then
    ``Linear(C/2 → C/2)`` without bias.
    """

    def __init__(self, channels: int, *, conditioned: bool, rngs: nnx.Rngs) -> None:
        half = channels // 2
        self.upsample = nnx.Linear(channels, 2 * channels, use_bias=False, rngs=rngs)
        self.norm = ConditionalLayerNorm(half, conditioned=conditioned, rngs=rngs)
        self.mixup = nnx.Linear(half, half, use_bias=False, rngs=rngs)

    def __call__(self, x: jax.Array, t: jax.Array | None, grid: tuple[int, int]) -> jax.Array:
        """``(B, h, w, C) -> (B, *grid, C/2)``."""
        b, h, w, c = x.shape
        x = self.upsample(x).reshape(b, h, w, 2, 2, c // 2).transpose(0, 1, 3, 2, 4, 5)
        x = x.reshape(b, 2 * h, 2 * w, c // 2)[:, :grid[0], :grid[1]]
        return self.mixup(self.norm(x, t))


class DepthwiseConv(nnx.Module):
    """Per-channel ``k×k`` convolution (``k`` odd), zero-padded to the input's size.

    The parameters of ``nnx.Conv(C, C, (k, k), padding=k // 2, feature_group_count=C)``
    (``kernel (k, k, 1, C)``, ``bias (C,)``, initialised alike), computed as a sum of ``k²``
    shifted products instead of a grouped convolution: XLA's SPMD partitioner (jax 0.10.2)
    all-reduces the kernel gradient of a grouped convolution over every device of the mesh,
    so with the batch split on ``data`` it came out multiplied by the size of ``model``.
    """

    def __init__(self, channels: int, size: int, *, rngs: nnx.Rngs) -> None:
        self.kernel = nnx.Param(nnx.initializers.lecun_normal()(rngs.params(),
                                                                (size, size, 1, channels)))
        self.bias = nnx.Param(jnp.zeros((channels,)))

    def __call__(self, x: jax.Array) -> jax.Array:
        """``(B, H, W, C) -> (B, H, W, C)``."""
        size, (h, w) = self.kernel.shape[0], x.shape[1:3]
        kernel, half = self.kernel[...], size // 2
        x = jnp.pad(x, ((0, 0), (half, half), (half, half), (0, 0)))
        return sum((x[:, i:i + h, j:j + w] * kernel[i, j, 0]
                    for i in range(size) for j in range(size)), self.bias[...])


class ConvNeXtBlock(nnx.Module):
    """ConvNeXt block on a skip path: ``x + γ ⊙ MLP(norm(depthwise 7×7 conv(x)))``.

    ``(B, H, W, C) -> (B, H, W, C)``; MLP ``C → 4C → C`` with GELU, per-channel layer scale
    γ initialised to 1e-6 so the block starts as the identity.
    """

    def __init__(self, channels: int, *, conditioned: bool, rngs: nnx.Rngs) -> None:
        self.depthwise = DepthwiseConv(channels, 7, rngs=rngs)
        self.norm = ConditionalLayerNorm(channels, conditioned=conditioned, rngs=rngs)
        self.mlp = ChannelMLP(channels, channels, 4 * channels, rngs=rngs)
        self.layer_scale = nnx.Param(jnp.full((channels,), 1e-6))

    def __call__(self, x: jax.Array, t: jax.Array | None) -> jax.Array:
        """``(B, H, W, C) -> (B, H, W, C)``."""
        return x + self.layer_scale[...] * self.mlp(self.norm(self.depthwise(x), t))


def _resolve(size: str | None, given: dict[str, Any]) -> dict[str, Any]:
    if size not in (None, *SIZES):
        raise ValueError(f"unknown size {size!r}; choose one of {', '.join(map(repr, SIZES))}")
    preset = {**_COMMON, **SIZES[size or "T"]}
    return {key: preset[key] if value is None else value for key, value in given.items()}


@register("scot")
class ScOT(nnx.Module):
    """Poseidon's scOT: ``model(x, t)``, ``x (B, H, W, C_in)``, ``t (B,)`` → ``(B, H, W, C_out)``.

    Args:
      in_channels, out_channels: channels of the input and output fields.
      size: ``"T"``, ``"B"`` or ``"L"`` (Poseidon's presets, see the module docstring);
        ``None`` is ``"T"``. Arguments given explicitly override the preset.
      hidden_channels: embedding width ``D`` (Poseidon's ``embed_dim``); stage ``s`` has
        ``D·2^s`` channels.
      depths: Swin-V2 blocks per stage (encoder and decoder alike); the number of entries
        is the number of stages.
      n_heads: attention heads per stage.
      skip_blocks: ConvNeXt blocks on each stage's skip path (0: identity).
      patch_size: side of the square patches embedded as tokens.
      window_size: attention window side ``M`` (tokens).
      mlp_ratio: MLP width of a block as a multiple of its channels.
      time_conditioning: layer norms affine in the lead time ``t`` (``model(x, t)``); with
        ``False`` plain layer norms and ``model(x)``.
      rngs: random streams for the initialisation (``None``: ``nnx.Rngs(0)``).

    >>> import jax.numpy as jnp
    >>> model = ScOT(2, 1, hidden_channels=8, depths=(2, 1), n_heads=(2, 2),
    ...              skip_blocks=(1, 0), patch_size=2, window_size=4)
    >>> x, t = jnp.ones((3, 32, 24, 2)), jnp.array([0.0, 0.5, 1.0])   # (B, H, W, C_in), (B,)
    >>> jax.eval_shape(model, x, t).shape                              # = model(x, t).shape
    (3, 32, 24, 1)
    """

    # Parameter sharding over a mesh's "model" axis (nopx.parallel.param_shardings), as
    # Megatron splits a transformer so that each block needs one all-reduce per sublayer:
    # attention by whole heads (query/key/value kernels (C, heads·d) and biases on their
    # output axis, the output kernel (heads·d, C) on its input axis, position-bias MLP
    # output (512, heads) and logit scales (heads,) on the head axis; all of it replicated
    # where the heads do not divide by the model size), MLPs C → hC → C by their hidden
    # units. The rest is replicated (norms, patch merging/expansion, convolutions: about 5% of
    # scOT-T's weights, whose reshapes and channel norms would cost collectives).
    sharding_rules = ((r"attention/(query|key|value)/(kernel|bias)$", -1, "attention/logit_scale"),
                      (r"attention/output/kernel$", 0, "attention/logit_scale"),
                      (r"attention/cpb_out/kernel$", -1),
                      (r"attention/logit_scale$", 0),
                      (r"mlp/layers/0/(kernel|bias)$", -1),
                      (r"mlp/layers/1/kernel$", 0))

    def __init__(self, in_channels: int, out_channels: int, size: str | None = None, *,
                 hidden_channels: int | None = None, depths: Sequence[int] | None = None,
                 n_heads: Sequence[int] | None = None, skip_blocks: Sequence[int] | None = None,
                 patch_size: int | None = None, window_size: int | None = None,
                 mlp_ratio: float | None = None, time_conditioning: bool = True,
                 rngs: nnx.Rngs | None = None) -> None:
        cfg = _resolve(size, {"hidden_channels": hidden_channels, "depths": depths,
                              "n_heads": n_heads, "skip_blocks": skip_blocks,
                              "patch_size": patch_size, "window_size": window_size,
                              "mlp_ratio": mlp_ratio})
        check_positive(in_channels=in_channels, out_channels=out_channels,
                       hidden_channels=cfg["hidden_channels"], patch_size=cfg["patch_size"],
                       window_size=cfg["window_size"])
        depths, heads, skips = (tuple(cfg[k]) for k in ("depths", "n_heads", "skip_blocks"))
        if not len(depths) == len(heads) == len(skips) or not depths:
            raise ValueError(f"depths, n_heads and skip_blocks need one entry per stage; got "
                             f"{depths}, {heads}, {skips}")
        for stage, (depth, head, skip) in enumerate(zip(depths, heads, skips)):
            check_positive(**{f"depths[{stage}]": depth, f"n_heads[{stage}]": head})
            if isinstance(skip, bool) or not isinstance(skip, int) or skip < 0:
                raise ValueError(f"skip_blocks[{stage}] must be an integer >= 0, got {skip!r}")
        if cfg["mlp_ratio"] <= 0:
            raise ValueError(f"mlp_ratio must be positive, got {cfg['mlp_ratio']!r}")
        rngs = nnx.Rngs(0) if rngs is None else rngs
        self.in_channels, self.out_channels = in_channels, out_channels
        self.patch_size, self.window_size = cfg["patch_size"], cfg["window_size"]
        self.time_conditioning = time_conditioning
        p, width = self.patch_size, cfg["hidden_channels"]
        widths = [width * 2 ** s for s in range(len(depths))]
        common = {"mlp_ratio": cfg["mlp_ratio"], "conditioned": time_conditioning, "rngs": rngs}
        norm = {"conditioned": time_conditioning, "rngs": rngs}

        self.embedding = nnx.Conv(in_channels, width, (p, p), strides=(p, p), padding="VALID",
                                  rngs=rngs)
        self.embedding_norm = ConditionalLayerNorm(width, **norm)
        self.encoder = nnx.List([
            SwinV2Stage(c, h, d, first_shifted=False, **common)
            for c, h, d in zip(widths, heads, depths)])
        self.merging = nnx.List([PatchMerging(c, **norm) for c in widths[:-1]])
        self.skips = nnx.List([
            nnx.List([ConvNeXtBlock(c, **norm) for _ in range(n)]) for c, n in zip(widths, skips)])
        self.decoder = nnx.List([
            SwinV2Stage(c, h, d, first_shifted=d % 2 == 0, **common)
            for c, h, d in zip(widths, heads, depths)])
        self.expansion = nnx.List([PatchExpansion(c, **norm) for c in widths[1:]])
        self.recovery = nnx.ConvTranspose(width, out_channels, (p, p), strides=(p, p),
                                          padding="VALID", rngs=rngs)
        self.mixup = nnx.Conv(out_channels, out_channels, (5, 5), padding=2, use_bias=False,
                              rngs=rngs)

    @staticmethod
    def takes_time(kwargs: dict[str, Any]) -> bool:
        """Called ``model(x, t)`` unless built with ``time_conditioning=False`` (the
        capability :mod:`nopx.training.tasks` asks a model class for)."""
        return bool(kwargs.get("time_conditioning", True))

    def __call__(self, x: jax.Array, t: jax.Array | None = None) -> jax.Array:
        """``(B, H, W, C_in)``, lead time ``t (B,)`` (or a scalar) → ``(B, H, W, C_out)``."""
        if x.ndim != 4 or x.shape[-1] != self.in_channels:
            raise ValueError(f"ScOT expects (batch, H, W, {self.in_channels} channels); got "
                             f"shape {x.shape}")
        if self.time_conditioning:
            if t is None:
                raise ValueError("this ScOT is time-conditioned: call it as model(x, t) with "
                                 "the lead time t of shape (batch,)")
            t = jnp.broadcast_to(jnp.asarray(t, x.dtype), x.shape[:1])
        grid, p = x.shape[1:3], self.patch_size
        x = jnp.pad(x, ((0, 0), (0, -grid[0] % p), (0, -grid[1] % p), (0, 0)))
        x = self.embedding_norm(self.embedding(x), t)

        skips = []
        for stage, blocks in enumerate(self.encoder):
            out = blocks(x, t, self.window_size)
            skips.append(out)
            if stage < len(self.merging):
                x = self.merging[stage](out + x, t)
        for stage, blocks in enumerate(self.skips):
            for block in blocks:
                skips[stage] = block(skips[stage], t)

        x = skips[-1]
        for stage in reversed(range(len(self.decoder))):
            if stage < len(self.decoder) - 1:
                x = x + skips[stage]
            x = self.decoder[stage](x, t, self.window_size)
            if stage > 0:
                x = self.expansion[stage - 1](x, t, skips[stage - 1].shape[1:3])
        x = self.recovery(x)[:, :grid[0], :grid[1]]
        return self.mixup(x)
