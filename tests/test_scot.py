"""scOT: Poseidon's parameter counts, shapes, windows, time conditioning, training, 8 devices."""

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nopx.layers.window_attention import window_and_shift
from nopx.models import ScOT

# Two stages on a 16² grid with patch 2: stage 0 has 8×8 tokens in 2×2 windows of 4 (its
# second block shifted), stage 1 has 4×4 tokens in one window.
SMALL = {"hidden_channels": 8, "depths": (2, 1), "n_heads": (2, 2), "skip_blocks": (1, 0),
         "patch_size": 2, "window_size": 4}


def n_params(model: nnx.Module) -> int:
    return sum(p.size for p in jax.tree.leaves(nnx.state(model, nnx.Param)))


class _AbstractKeys:
    """Stands in for ``nnx.Rngs`` under ``nnx.eval_shape``: the same key for every draw.

    With flax 0.12.8 / jax 0.10.2 each traced ``nnx.Rngs`` draw updates its counter through
    a check that walks the whole trace so far, so ``eval_shape`` of ScOT-L would take
    minutes; shapes do not depend on the keys.
    """

    def __getattr__(self, stream: str):
        return lambda: jax.random.key(0)


@pytest.mark.parametrize("size, conditioned, expected, published", [
    ("T", True, 20_774_444, "20.8"), ("B", True, 157_729_988, "158"),
    ("L", True, 628_575_524, "629"), ("T", False, 20_747_948, None)])
def test_parameter_counts_are_poseidons(size, conditioned, expected, published):
    model = nnx.eval_shape(lambda: ScOT(4, 4, size, time_conditioning=conditioned,
                                        rngs=_AbstractKeys()))
    assert n_params(model) == expected
    if published:                      # the model cards give 20.8 M / 158 M / 629 M
        assert f"{expected / 1e6:.{1 if size == 'T' else 0}f}" == published


@pytest.fixture(scope="module")
def small():
    model = ScOT(2, 1, **SMALL, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (4, 16, 16, 2))
    t = jnp.array([0.0, 0.25, 0.5, 1.0])
    return model, x, t


@nnx.jit
def _apply(model, x, t):
    return model(x, t)


def _shape(model, x, *t):
    """The output shape by abstract evaluation (no compilation)."""
    return nnx.eval_shape(lambda model, x: model(x, *t), model, x).shape


def test_shapes_on_any_grid(small):
    model, x, t = small
    out = _apply(model, x, t)
    assert out.shape == (4, 16, 16, 1) and bool(jnp.isfinite(out).all())
    assert _shape(model, x[:1, :13, :10], 0.5) == (1, 13, 10, 1)   # padded and cropped
    plain = nnx.eval_shape(lambda: ScOT(2, 1, **SMALL, time_conditioning=False))
    assert _shape(plain, x) == (4, 16, 16, 1)                      # model(x), no t


def test_window_shrinks_to_the_grid(small):
    assert window_and_shift((8, 8), 16) == ((8, 8), (0, 0))       # whole grid, no shift
    assert window_and_shift((32, 8), 16, shifted=False) == ((16, 8), (0, 0))
    model, x, t = small
    windowed = _apply(model, x, t)
    model.window_size = 8             # = stage 0's grid: one window per stage, no shift
    whole = _apply(model, x, t)
    model.window_size = 64            # larger than every grid: shrinks to the same
    shrunk = _apply(model, x, t)
    model.window_size = SMALL["window_size"]
    np.testing.assert_array_equal(shrunk, whole)
    assert float(jnp.abs(whole - windowed).max()) > 1e-4


def test_output_depends_continuously_on_time(small):
    model, x, t = small

    def at(time: float) -> jax.Array:
        return _apply(model, x, jnp.full_like(t, time))

    step = float(jnp.abs(at(0.5) - at(0.3)).max())
    tiny = float(jnp.abs(at(0.3 + 1e-4) - at(0.3)).max())
    assert step > 1e-3
    assert tiny < 1e-2 * step


def test_call_errors(small):
    model, x, _ = small
    with pytest.raises(ValueError, match="model\\(x, t\\)"):
        model(x)
    with pytest.raises(ValueError, match="2 channels"):
        model(x[..., :1], 0.0)


@pytest.mark.parametrize("kwargs, message", [
    ({"size": "XL"}, "size"),
    ({"depths": (2, 2), "n_heads": (2,)}, "one entry per stage"),
    ({"hidden_channels": 6, "n_heads": (4, 4)}, "multiple of n_heads"),
    ({"skip_blocks": (-1, 0)}, "skip_blocks"),
    ({"window_size": 0}, "window_size"),
])
def test_bad_arguments_raise_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        nnx.eval_shape(lambda: ScOT(2, 1, **{**SMALL, **kwargs}))


# In a process with 8 CPU devices: one Adam step on a batch split over the 8 devices gives
# the loss and gradients of one device, and the step lowers the loss. A one-stage model:
# compiling the gradient of a bigger one costs more than it checks here.
_DATA_PARALLEL = """
import json
import jax
jax.config.update("jax_num_cpu_devices", 8)
import jax.numpy as jnp
import optax
from flax import nnx
from nopx.models import ScOT
from nopx.parallel import StepShardings, make_mesh, place

graphdef, params = nnx.split(ScOT(2, 1, hidden_channels=8, depths=(2,), n_heads=(2,),
                                  skip_blocks=(1,), patch_size=2, window_size=4))
x = jax.random.normal(jax.random.key(1), (8, 16, 16, 2))
t = jnp.linspace(0.0, 1.0, 8)
y = jnp.sin(x[..., :1]) * (1.0 + t[:, None, None, None])
tx = optax.adam(1e-3)


@jax.jit
def train_step(params, x, t, y):
    def loss(params):
        return jnp.mean((nnx.merge(graphdef, params)(x, t) - y) ** 2)

    value, grads = jax.value_and_grad(loss)(params)
    updates, _ = tx.update(grads, tx.init(params), params)
    return value, grads, loss(optax.apply_updates(params, updates))


shardings = StepShardings.build(make_mesh(8, 1), params, tx)
loss1, grads1, after = train_step(params, x, t, y)
loss8, grads8, _ = train_step(place(params, shardings.params),
                              *place((x, t, y), (shardings.batch,) * 3))
print(json.dumps({
    "devices": jax.device_count(), "loss": [float(loss1), float(loss8)],
    "grad_rel_diff": float(optax.global_norm(jax.tree.map(jnp.subtract, grads1, grads8))
                           / optax.global_norm(grads1)),
    "loss_after_step": float(after)}))
"""


@pytest.mark.slow
def test_eight_devices_match_one_and_an_adam_step_lowers_the_loss():
    result = subprocess.run([sys.executable, "-c", _DATA_PARALLEL], capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["devices"] == 8
    assert report["loss"][1] == pytest.approx(report["loss"][0], rel=1e-5)
    assert report["grad_rel_diff"] < 1e-4
    assert report["loss_after_step"] < report["loss"][0]
