r"""The Fourier Neural Operator (Li et al. 2021) as in neuraloperator 2.x, channels-last.

.. code-block:: text

    x (B, *n, C_in) ─ grid embedding ─ lifting MLP ─ domain pad ─ L × FNOBlock ─ unpad
                    ─ projection MLP ─ (B, *n, C_out)

Each block (:class:`~nopx.layers.FNOBlock`) is
:math:`v \mapsto \sigma\big(\mathcal{F}^{-1}[W_\ell \cdot \mathcal{F}v] + S v\big)` followed
by a channel MLP, with :math:`W_\ell \in \mathbb{C}^{k_1 \times \dots \times k_d \times C
\times C}` the spectral weight on the kept modes. ``factorization`` stores :math:`W_\ell`
dense (the FNO) or as a low-rank CP, Tucker or TT tensor (the TFNO, :mod:`nopx.models.tfno`),
per block or, with ``joint_factorization``, as one tensor for the whole stack.

With the defaults the parameter count equals neuraloperator 2.0.0's ``FNO`` (complex
weights counted as 2 reals): e.g. 1,192,801 for 2-D, 1 → 1, ``n_modes=(16, 16)``, 32 hidden
channels, 4 layers. One knowingly different default: ``non_linearity="gelu"`` is the exact
(erf) GELU like PyTorch's; ``"gelu_tanh"`` picks the approximation.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
from flax import nnx

from nopx.layers import (ChannelMLP, FNOBlock, append_grid, domain_pads, pad_domain,
                         unpad_domain)
from nopx.layers.batch_chunks import Chunks, apply_in_chunks, check_chunks, resolve_chunks
from nopx.layers.checks import check_choice, check_n_modes, check_positive
from nopx.layers.factorized import FACTORIZATIONS, Factorization, FactorizedTensor, Rank
from nopx.layers.fourier import Method, Norm, kept_shape
from nopx.layers.spectral_conv import IMPLEMENTATIONS, Implementation, default_std
from nopx.models.registry import register


def _ratio_width(name: str, ratio: float, hidden_channels: int) -> int:
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or ratio <= 0:
        raise ValueError(f"{name} must be a positive number, got {ratio!r}")
    return max(1, int(ratio * hidden_channels))


@register("fno")
class FNO(nnx.Module):
    """Fourier Neural Operator on a 1-, 2- or 3-D grid: ``(B, *n, C_in) -> (B, *n, C_out)``.

    The dimension is ``len(n_modes)``; any grid with at least ``n_modes[k]`` points per axis
    works (the weights do not depend on the resolution).

    Args:
      in_channels, out_channels: channels of the input and output fields.
      n_modes: Fourier modes kept per axis, neuraloperator's convention (all signs counted;
        ``n_modes[-1]//2 + 1`` bins on the last axis).
      hidden_channels: width of the FNO blocks.
      n_layers: number of FNO blocks.
      lifting_channel_ratio, projection_channel_ratio: hidden width of the lifting and
        projection MLPs as a multiple of ``hidden_channels``. ``lifting_channel_ratio=None``
        lifts with a single linear map (the original FNO's ``fc0``).
      positional_embedding: ``"grid"`` appends the coordinates in [0, 1) as ``d`` extra input
        channels; ``None`` does not.
      channel_mlp_expansion: channel-MLP width in each block as a fraction of
        ``hidden_channels``; ``None`` for none.
      channel_mlp_skip, fno_skip: ``"linear"``, ``"soft-gating"``, ``"identity"`` or ``None``.
      domain_padding: ``None`` or the fraction of each axis (float or one per axis) zero-padded
        on both sides around the blocks, for non-periodic problems.
      non_linearity: ``"gelu"`` (exact, erf), ``"gelu_tanh"``, ``"relu"``, ``"silu"`` or
        ``"tanh"``.
      norm: ``None``, ``"instance_norm"`` or ``"group_norm"`` inside the blocks.
      fft_norm: ``"forward"`` (default), ``"backward"`` or ``"ortho"``.
      transform: how the truncated FFTs are computed: ``"auto"``, ``"fft"`` or ``"dft"``.
      factorization: the spectral weights: ``"dense"`` (default), or low-rank ``"tucker"``,
        ``"cp"`` or ``"tt"`` (:mod:`nopx.layers.factorized`; the TFNO).
      rank: fraction of the dense spectral parameter count kept by a factorization (of one
        block's weight, or of the stack's with ``joint_factorization``), or explicit ranks;
        ignored when dense.
      joint_factorization: one factorized tensor ``(n_layers, *kept, C, C)`` shared by the
        blocks, block ``l`` using slice ``l``; ignored when dense.
      implementation: ``"auto"``, ``"reconstructed"`` or ``"factorized"``: how a factorized
        weight is applied (:class:`~nopx.layers.SpectralConv`).
      batch_chunks: run a batch as this many independent chunks (``"auto"``: two or four
        on a single-device CPU backend, by the CPUs available, one elsewhere;
        :func:`~nopx.layers.batch_chunks.resolve_chunks`). The output does not depend on it;
        XLA:CPU overlaps the chunks.
      rngs: random streams for the initialisation (``None``: ``nnx.Rngs(0)``).

    >>> import jax.numpy as jnp
    >>> model = FNO(1, 1, n_modes=(8, 8), hidden_channels=16)
    >>> model(jnp.ones((4, 32, 32, 1))).shape
    (4, 32, 32, 1)
    """

    # Parameter sharding over a mesh's "model" axis (nopx.parallel.param_shardings): the
    # dense spectral weights (*kept, C_in, C_out) and every channel-MLP, skip, lifting and
    # projection kernel (C_in, C_out) along their output channels, the factors of a factorized
    # spectral weight (CP/Tucker factors (n, rank), Tucker core, TT cores (r, n, r')) along
    # their last rank axis; the rest is replicated.
    sharding_rules = ((r"conv/weight_(real|imag)$", -1), (r"conv/weight/(real|imag)/\d+$", -1),
                      (r"kernel$", -1))

    def __init__(self, in_channels: int, out_channels: int, n_modes: Sequence[int],
                 hidden_channels: int, n_layers: int = 4, *,
                 lifting_channel_ratio: float | None = 2,
                 projection_channel_ratio: float = 2, positional_embedding: str | None = "grid",
                 channel_mlp_expansion: float | None = 0.5,
                 channel_mlp_skip: str | None = "soft-gating", fno_skip: str | None = "linear",
                 domain_padding: float | Sequence[float] | None = None,
                 non_linearity: str = "gelu", norm: str | None = None, fft_norm: Norm = "forward",
                 transform: Method = "auto", factorization: Factorization = "dense",
                 rank: Rank = 0.1, joint_factorization: bool = False,
                 implementation: Implementation = "auto", batch_chunks: Chunks = "auto",
                 rngs: nnx.Rngs | None = None) -> None:
        check_positive(in_channels=in_channels, out_channels=out_channels,
                       hidden_channels=hidden_channels, n_layers=n_layers)
        check_chunks(batch_chunks)
        check_choice("positional_embedding", positional_embedding, ("grid", None))
        check_choice("factorization", factorization, FACTORIZATIONS)
        check_choice("implementation", implementation, IMPLEMENTATIONS)
        rngs = nnx.Rngs(0) if rngs is None else rngs
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.n_modes = check_n_modes(n_modes)
        self.n_layers = n_layers
        self.positional_embedding = positional_embedding
        self.factorization = factorization
        self.joint_factorization = joint_factorization
        self.batch_chunks = batch_chunks
        dim = len(self.n_modes)
        if domain_padding is not None:
            domain_pads((1,) * dim, domain_padding)          # raises ValueError if malformed
            if not isinstance(domain_padding, (int, float)):
                domain_padding = tuple(domain_padding)
        self.domain_padding = domain_padding
        lifting_in = in_channels + (dim if positional_embedding == "grid" else 0)
        single = lifting_channel_ratio is None
        self.lifting = ChannelMLP(
            lifting_in, hidden_channels,
            hidden_channels if single else
            _ratio_width("lifting_channel_ratio", lifting_channel_ratio, hidden_channels),
            n_layers=1 if single else 2, non_linearity=non_linearity, rngs=rngs)
        # Held by the blocks only (not as an attribute here), so its parameters live under
        # blocks/0/conv/weight/ whether or not the stack shares it.
        joint = None
        if joint_factorization and factorization != "dense":
            joint = FactorizedTensor(
                (n_layers, *kept_shape(self.n_modes), hidden_channels, hidden_channels),
                factorization, rank, std=default_std(hidden_channels, hidden_channels),
                rngs=rngs)
        # A Python loop over the blocks, not a lax.scan over stacked ones: on XLA:CPU the scan
        # made the forward pass 1.5-2.3x faster (the loop carry stops XLA from re-fusing each
        # block's elementwise tail into the next block's consumers) but the train step 7-19%
        # slower (stacked residuals), and training is what we optimise for.
        self.blocks = nnx.List([
            FNOBlock(hidden_channels, hidden_channels, self.n_modes,
                     activate_output=layer < n_layers - 1, non_linearity=non_linearity,
                     channel_mlp_expansion=channel_mlp_expansion,
                     channel_mlp_skip=channel_mlp_skip, fno_skip=fno_skip, norm=norm,
                     fft_norm=fft_norm, transform=transform, factorization=factorization,
                     rank=rank, implementation=implementation, weight=joint,
                     layer=None if joint is None else layer, rngs=rngs)
            for layer in range(n_layers)])
        self.projection = ChannelMLP(
            hidden_channels, out_channels,
            _ratio_width("projection_channel_ratio", projection_channel_ratio, hidden_channels),
            non_linearity=non_linearity, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """``(B, n_1, ..., n_d, C_in) -> (B, n_1, ..., n_d, C_out)``."""
        self._check_input(x)
        chunks = resolve_chunks(self.batch_chunks, x.shape[0])
        return apply_in_chunks(lambda part: self.head(self.trunk(part), x.shape[1:-1]), x, chunks)

    def _check_input(self, x: jax.Array) -> None:
        dim = len(self.n_modes)
        if x.ndim != dim + 2 or x.shape[-1] != self.in_channels:
            raise ValueError(f"FNO expects (batch, {dim} spatial axes, {self.in_channels} "
                             f"channels); got shape {x.shape}")

    def trunk(self, x: jax.Array) -> jax.Array:
        """All before the last block: ``(B, *n, C_in) -> (B, *padded n, hidden_channels)``.

        With :meth:`head`, the cut at the last spectral convolution that Spectral-Refiner
        fine-tunes (:mod:`nopx.refine`).
        """
        self._check_input(x)
        if self.positional_embedding == "grid":
            x = append_grid(x)
        x = self.lifting(x)
        if self.domain_padding is not None:
            x, _ = pad_domain(x, self.domain_padding)
        for block in self.blocks[:-1]:
            x = block(x)
        return x

    def head(self, v: jax.Array, grid: Sequence[int]) -> jax.Array:
        """The last block, unpadding and projection: :meth:`trunk`'s output on the input
        ``grid`` ``-> (B, *grid, C_out)``."""
        x = self.blocks[-1](v)
        if self.domain_padding is not None:
            x = unpad_domain(x, domain_pads(grid, self.domain_padding))
        return self.projection(x)
