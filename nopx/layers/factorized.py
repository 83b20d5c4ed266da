r"""Low-rank complex tensors for spectral weights: CP, Tucker and tensor-train (TT) forms.

A factorized spectral convolution (TFNO, Kossaifi et al. 2024) stores its complex weight
:math:`W \in \mathbb{C}^{n_1 \times \dots \times n_N}` — per layer ``(*kept, C_in, C_out)``
or, factorized jointly, ``(L, *kept, C_in, C_out)`` for a stack of ``L`` layers — as

* **CP**: :math:`W = \sum_r \lambda_r\, a^{(1)}_r \circ \dots \circ a^{(N)}_r`, parameters
  :math:`\lambda \in \mathbb{R}^R`, :math:`a^{(k)} \in \mathbb{C}^{n_k \times R}`;
* **Tucker**: :math:`W = G \times_1 U_1 \dots \times_N U_N`, core
  :math:`G \in \mathbb{C}^{R_1 \times \dots \times R_N}`,
  :math:`U_k \in \mathbb{C}^{n_k \times R_k}`;
* **TT**: :math:`W_{i_1 \dots i_N} = G_1[i_1] \cdots G_N[i_N]`, cores
  :math:`G_k \in \mathbb{C}^{R_{k-1} \times n_k \times R_k}`, :math:`R_0 = R_N = 1`.

Every complex factor is a real/imag pair of float parameters (optax climbs on complex ones).

``rank`` is either a fraction of the dense parameter count (a float in (0, 1]) or explicit
ranks: an int for CP, one int per axis for Tucker, the ``N - 1`` inner ranks (or one int)
for TT. Fractions follow tensorly/tltorch, so nopx and neuraloperator count alike:

* Tucker: :math:`R_k = \max(1, \mathrm{round}(x\,n_k))` with :math:`x` the root of
  :math:`x^N \prod n_k + x \sum n_k^2 = \text{rank} \cdot \prod n_k` (core + factors);
  a TFNO of rank 0.1 (32 channels, 16×16 modes) gets ranks (9, 5, 18, 18) per layer.
* CP: :math:`R = \max(1, \mathrm{round}(\text{rank} \prod n_k / \sum n_k))`.
* TT: one inner rank :math:`R`, the positive root of
  :math:`R^2 \sum_{1<k<N} n_k + R(n_1 + n_N) = \text{rank} \prod n_k` (tensorly's
  ``constant_rank`` rule).

Initialisation: every factor is a complex normal, scaled so that the *reconstructed* weight
has standard deviation ``std`` (the dense layer's), e.g. Tucker core ``std`` and factors
``1/sqrt(R_k)``.

Why our own few contractions and not tensorly's JAX backend: a factorized weight needs
three operations here — rebuild the dense tensor (one ``einsum``), slice one layer out of a
joint tensor (fold one factor row into the core or the CP weights), and contract the input
with the factors without rebuilding (two more ``einsum`` calls). That is under 100 lines,
traced and fused by XLA like any other ``einsum``. tensorly would add a dependency with a
*global* backend switch (``tl.set_backend("jax")`` for the whole process, clashing with
numpy users of the same process), its factorized-tensor classes are not pytrees/nnx
variables, and it has no contraction of an input with the factors — the one operation
where factorizing can save work. Speed is no reason either way: our Tucker rebuild is the
same mode products in turn as tensorly's ``tucker_to_tensor``. Measured (2026-11-30,
XLA:CPU, 2 contended cores, tensorly 0.10.0 with its JAX backend, same factors, equal to
1e-5; rank-0.1 Tucker weight (16, 9, 32, 32), rebuild forward + backward, jitted, median of
30 interleaved calls): nopx 9.6 / 13.5 ms, tensorly 9.0 / 12.2 ms in two runs — equal
within this machine's noise. A single five-operand ``einsum`` for the same rebuild was up
to 2x slower (XLA followed a worse contraction order), hence the explicit order.
"""

from __future__ import annotations

import functools
import itertools
import math
import string
from collections.abc import Callable, Sequence
from typing import Literal

import jax
import jax.numpy as jnp
from flax import nnx

from nopx.layers.checks import check_choice

Factorization = Literal["dense", "cp", "tucker", "tt"]
FACTORIZATIONS = ("dense", "cp", "tucker", "tt")
Rank = float | int | Sequence[int]


def _increasing_root(f: Callable[[float], float], low: float, high: float) -> float:
    """The root of an increasing ``f`` with ``f(low) <= 0 <= f(high)``, by bisection to float
    precision (scipy's root finders would cost every ``import nopx.layers`` 48 MiB of RSS).

    >>> round(_increasing_root(lambda t: t * t - 2.0, 0.0, 2.0), 12)
    1.414213562373
    """
    while True:
        middle = 0.5 * (low + high)
        if not low < middle < high:
            return middle
        low, high = (middle, high) if f(middle) < 0 else (low, middle)


def tucker_ranks(shape: Sequence[int], rank: Rank) -> tuple[int, ...]:
    """Tucker ranks, one per axis, from a parameter fraction or explicit ranks.

    >>> tucker_ranks((32, 32, 16, 9), 0.1)
    (18, 18, 9, 5)
    >>> tucker_ranks((4, 5), [2, 3])
    (2, 3)
    """
    if isinstance(rank, float):
        size, squares, order = math.prod(shape), sum(n * n for n in shape), len(shape)
        x = _increasing_root(lambda t: size * t ** order + squares * t - rank * size,
                             0.0, max(rank, 1.0))
        return tuple(max(1, int(round(n * x))) for n in shape)
    ranks = (rank,) * len(shape) if isinstance(rank, int) else tuple(rank)
    if len(ranks) != len(shape):
        raise ValueError(f"a Tucker rank needs one int per axis of {tuple(shape)}, got {rank!r}")
    return ranks


def cp_rank(shape: Sequence[int], rank: Rank) -> int:
    """The CP rank from a parameter fraction or an explicit int.

    >>> cp_rank((32, 32, 16, 9), 0.1)
    166
    """
    if isinstance(rank, float):
        return max(1, int(round(rank * math.prod(shape) / sum(shape))))
    if not isinstance(rank, int):
        raise ValueError(f"a CP rank is a fraction or one int, got {rank!r}")
    return rank


def tt_ranks(shape: Sequence[int], rank: Rank) -> tuple[int, ...]:
    """TT ranks ``(1, R_1, ..., R_{N-1}, 1)`` from a fraction, one int or the inner ranks.

    >>> tt_ranks((32, 32, 16, 9), 0.1)
    (1, 17, 17, 17, 1)
    """
    inner = len(shape) - 1
    if isinstance(rank, float):
        a, b = sum(shape[1:-1]), shape[0] + shape[-1]
        target = rank * math.prod(shape)
        root = (-b + math.sqrt(b * b + 4 * a * target)) / (2 * a) if a else target / b
        rank = max(1, int(round(root)))
    ranks = (rank,) * inner if isinstance(rank, int) else tuple(rank)
    if len(ranks) != inner:
        raise ValueError(f"a TT rank needs {inner} inner ranks for {tuple(shape)}, got {rank!r}")
    return (1, *ranks, 1)


def _factor_shapes(kind: str, shape: Sequence[int], rank: Rank) -> list[tuple[int, ...]]:
    """Complex factor shapes, in the order :class:`FactorizedTensor` stores them."""
    if kind == "cp":
        r = cp_rank(shape, rank)
        return [(n, r) for n in shape]
    if kind == "tucker":
        ranks = tucker_ranks(shape, rank)
        return [ranks, *[(n, r) for n, r in zip(shape, ranks)]]
    ranks = tt_ranks(shape, rank)
    return [(ranks[k], n, ranks[k + 1]) for k, n in enumerate(shape)]


def _factor_stds(kind: str, shapes: list[tuple[int, ...]], std: float) -> list[float]:
    """Per-factor complex std so that the reconstructed entries have std ``std``."""
    if kind == "tucker":
        return [std] + [1.0 / math.sqrt(s[1]) for s in shapes[1:]]
    summed = shapes[0][1] if kind == "cp" else math.prod(s[2] for s in shapes[:-1])
    return [(std ** 2 / summed) ** (1.0 / (2 * len(shapes)))] * len(shapes)


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _complex_normal(key: jax.Array, shapes: tuple[tuple[int, ...], ...], stds: tuple[float, ...],
                    dtype: jnp.dtype) -> list[tuple[jax.Array, jax.Array]]:
    """Real/imag parts of complex normals of ``shapes`` and ``stds``, from one draw.

    One draw cut into pieces: on XLA:CPU every random draw is a separately compiled
    generator, and a TFNO layer has ten parameter arrays (seconds of compile time each).
    """
    sizes = [math.prod(shape) for shape in shapes for _ in range(2)]
    flat = jax.random.normal(key, (sum(sizes),), dtype)
    pieces = jnp.split(flat, list(itertools.accumulate(sizes))[:-1])
    return [(std / math.sqrt(2.0) * pieces[2 * k].reshape(shape),
             std / math.sqrt(2.0) * pieces[2 * k + 1].reshape(shape))
            for k, (shape, std) in enumerate(zip(shapes, stds))]


def _letters(count: int, start: int = 0) -> str:
    return string.ascii_letters[start:start + count]


def reconstruct(kind: str, factors: Sequence[jax.Array]) -> jax.Array:
    """The dense complex tensor of CP ``(λ, a_1..a_N)``, Tucker ``(G, U_1..U_N)`` or TT cores.

    >>> core, u, v = jnp.ones((1, 1)), jnp.ones((3, 1)), 2 * jnp.ones((2, 1))
    >>> reconstruct("tucker", [core, u, v]).tolist()
    [[2.0, 2.0], [2.0, 2.0], [2.0, 2.0]]
    """
    if kind == "tt":
        dense = factors[0][0]                                   # (n_1, R_1)
        for core in factors[1:]:
            dense = jnp.tensordot(dense, core, axes=1)
        return dense[..., 0]
    if kind == "cp":
        axes = _letters(len(factors) - 1)
        spec = ",".join(f"{a}z" for a in axes)
        return jnp.einsum(f"z,{spec}->{axes}", *factors)
    dense = factors[0]
    for factor in factors[1:]:              # mode products in turn: the cheap order
        dense = jnp.tensordot(dense, factor, axes=(0, 1))     # rank axis k -> size axis, last
    return dense


def select(kind: str, factors: Sequence[jax.Array], index: int) -> list[jax.Array]:
    """The factors of slice ``W[index]`` along the first axis (one layer of a joint tensor)."""
    if kind == "cp":
        return [factors[0] * factors[1][index], *factors[2:]]
    if kind == "tucker":
        core = jnp.tensordot(factors[1][index], factors[0], axes=1)
        return [core, *factors[2:]]
    merged = jnp.tensordot(factors[0][0, index], factors[1], axes=1)    # (n_2, R_2)
    return [merged[None], *factors[2:]]


def contract(kind: str, factors: Sequence[jax.Array], x: jax.Array) -> jax.Array:
    """``y[b, k, o] = Σ_i x[b, k, i] W[k, i, o]`` without rebuilding ``W``.

    ``W (*kept, C_in, C_out)`` in CP or Tucker form, ``x (B, *kept, C_in)`` complex. The
    input channels are projected onto the rank first, mixed on the kept modes, then
    expanded to the output channels: cheaper than rebuilding when the channel ranks are
    small (see :func:`contraction_flops`).
    """
    d = x.ndim - 2
    modes = "klm"[:d]
    if kind == "cp":
        spec = ",".join(f"{m}z" for m in modes)
        mode_part = jnp.einsum(f"z,{spec}->{modes}z", factors[0], *factors[1:d + 1])
        projected = jnp.einsum(f"b{modes}i,iz->b{modes}z", x, factors[d + 1])
        return jnp.einsum(f"b{modes}z,{modes}z,oz->b{modes}o", projected, mode_part, factors[-1])
    ranks = "pqr"[:d]
    spec = ",".join(f"{m}{r}" for m, r in zip(modes, ranks))
    mode_part = jnp.einsum(f"{ranks}YZ,{spec}->{modes}YZ", *factors[:d + 1])
    projected = jnp.einsum(f"b{modes}i,iY->b{modes}Y", x, factors[d + 1])
    mixed = jnp.einsum(f"b{modes}Y,{modes}YZ->b{modes}Z", projected, mode_part)
    return jnp.einsum(f"b{modes}Z,oZ->b{modes}o", mixed, factors[-1])


def contraction_flops(kind: str, shapes: Sequence[tuple[int, ...]], batch: int,
                      kept: int) -> tuple[int, int]:
    """Complex multiply-adds ``(reconstructed, factorized)`` for one layer's weight.

    ``shapes`` are the factor shapes of the per-layer weight ``(*kept, C_in, C_out)``,
    ``batch`` the batch size, ``kept`` the number of kept modes. TT is only rebuilt.
    """
    c_in, c_out = shapes[-2][-2 if kind == "tt" else 0], shapes[-1][-2 if kind == "tt" else 0]
    if kind == "tt":
        rebuild = sum(math.prod(s[1] for s in shapes[:k + 1]) * shapes[k][2] * shapes[k + 1][2]
                      for k in range(len(shapes) - 1))
        return rebuild + batch * kept * c_in * c_out, math.inf
    if kind == "cp":
        r = shapes[0][-1]
        rebuild = kept * c_in * c_out * r
        return (rebuild + batch * kept * c_in * c_out,
                kept * r * (len(shapes) - 2) + batch * kept * r * (c_in + 1 + c_out))
    core = shapes[0]
    r_in, r_out = core[-2], core[-1]
    mode_part = kept * r_in * r_out * math.prod(core[:-2])
    return (mode_part + kept * r_out * c_in * (r_in + c_out) + batch * kept * c_in * c_out,
            mode_part + batch * kept * (c_in * r_in + r_in * r_out + r_out * c_out))


class FactorizedTensor(nnx.Module):
    """A complex tensor of ``shape`` stored as CP, Tucker or TT factors (module docstring).

    Args:
      shape: the dense tensor's shape.
      factorization: ``"cp"``, ``"tucker"`` or ``"tt"``.
      rank: a fraction of the dense parameter count, or explicit ranks.
      std: standard deviation of the reconstructed complex entries.
      param_dtype: float dtype of the real/imag parameters.
      rngs: random streams.

    >>> w = FactorizedTensor((16, 9, 32, 32), "tucker", 0.1, std=0.02, rngs=nnx.Rngs(0))
    >>> [f.shape for f in w.factors()]
    [(9, 5, 18, 18), (16, 9), (9, 5), (32, 18), (32, 18)]
    >>> w.to_dense().shape
    (16, 9, 32, 32)
    """

    def __init__(self, shape: Sequence[int], factorization: Factorization, rank: Rank, *,
                 std: float, param_dtype: jnp.dtype = jnp.float32, rngs: nnx.Rngs) -> None:
        check_choice("factorization", factorization, FACTORIZATIONS[1:])
        if isinstance(rank, float) and not 0.0 < rank <= 1.0:
            raise ValueError(f"rank as a fraction must be in (0, 1], got {rank!r}")
        self.shape = tuple(shape)
        self.factorization = factorization
        shapes = _factor_shapes(factorization, self.shape, rank)
        stds = _factor_stds(factorization, shapes, std)
        parts = _complex_normal(rngs.params(), tuple(map(tuple, shapes)), tuple(stds),
                                param_dtype)
        self.real = nnx.List([nnx.Param(re) for re, _ in parts])
        self.imag = nnx.List([nnx.Param(im) for _, im in parts])
        if factorization == "cp":                       # real weights λ, starting at 1
            self.weights = nnx.Param(jnp.ones((shapes[0][1],), param_dtype))

    @property
    def factor_shapes(self) -> list[tuple[int, ...]]:
        """Shapes of :meth:`factors`."""
        extra = [tuple(self.weights.shape)] if self.factorization == "cp" else []
        return extra + [tuple(p.shape) for p in self.real]

    def factors(self, index: int | None = None) -> list[jax.Array]:
        """The complex factors (CP: ``λ`` first), of slice ``index`` of the first axis if given."""
        parts = [jax.lax.complex(r[...], i[...]) for r, i in zip(self.real, self.imag)]
        if self.factorization == "cp":
            parts = [self.weights[...].astype(parts[0].dtype), *parts]
        return parts if index is None else select(self.factorization, parts, index)

    def to_dense(self, index: int | None = None) -> jax.Array:
        """The reconstructed complex tensor (or its slice ``index`` along the first axis)."""
        return reconstruct(self.factorization, self.factors(index))

