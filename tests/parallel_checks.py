"""Sharding checks run in a process of their own with 8 CPU devices (tests/test_parallel.py).

``python parallel_checks.py CHECK[:ARG,ARG...] ...`` prints one JSON line, a report per check:

- ``equivalence:NAME,MESH,...`` (``MESH`` = ``DATAxMODEL``): one real train step
  (:class:`~nopx.training.steps.Steps`) of registered model ``NAME`` on one device and on each
  mesh (in float64 for the models in ``FLOAT64``); the relative differences of loss,
  parameters, update and Adam moments, and the worst parameter's Adam moments;
- ``depthwise``: on a 2x4 mesh, the kernel gradient of scOT's depthwise convolution and of
  the grouped ``lax`` convolution it replaces, each as a multiple of one device's;
- ``memory``: per-device parameter bytes of an FNO (1.19M parameters) for each ``model`` size;
- ``checkpoint:DIR``: a state saved on one mesh restored onto other meshes and one device;
- ``meshes``: mesh sizes resolved from a config, and the errors of bad ones.
"""

from __future__ import annotations

import contextlib
import json
import pathlib
import sys
from unittest import mock

import jax

jax.config.update("jax_num_cpu_devices", 8)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec  # noqa: E402
from jax.typing import DTypeLike  # noqa: E402

from nopx import losses, models  # noqa: E402
from nopx.config import CheckpointConfig  # noqa: E402
from nopx.errors import UserError  # noqa: E402
from nopx.models.scot import DepthwiseConv  # noqa: E402
from nopx.parallel import StepShardings, check_batch, device_bytes, make_mesh, place  # noqa: E402
from nopx.training.build import sharding_rules  # noqa: E402
from nopx.training.checkpoint import Checkpoints  # noqa: E402
from nopx.training.data import Normalizer  # noqa: E402
from nopx.training.steps import Steps  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from test_models import SMALL  # noqa: E402

# Changes to a model's SMALL arguments: scOT with 4 heads, which model=4 splits.
KWARGS = {"scot": {"hidden_channels": 16, "n_heads": (4, 4)}}
# Models whose step is compared in float64. scOT's gradient is ill-conditioned at these
# sizes: its scaled-cosine attention (logit scale 10 on 4- and 8-wide heads) magnifies
# rounding a hundred- to a thousandfold, so in float32 one device and 8x1 (data parallel
# alone) differ by 5e-6 here (1e-4 with SMALL's 2 heads), and one float32 ulp on the input
# moves even the exact gradient by 3e-6 (SMALL: 2e-5 to 8e-5). In float64 every mesh
# equals one device to 1e-13, so a sharding error cannot hide.
FLOAT64 = {"scot"}


def _floats(a, b) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``(path, a leaf, b leaf)`` for the float leaves of two pytrees of host arrays (step
    counts left out), in float64."""
    return [(jax.tree_util.keystr(path), np.asarray(u, np.float64), np.asarray(v, np.float64))
            for (path, u), v in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b))
            if np.issubdtype(v.dtype, np.floating)]


def _relative(a, b) -> float:
    """``‖a − b‖ / ‖b‖`` over the float arrays of two pytrees."""
    pairs = _floats(a, b)
    diff = np.sqrt(sum(np.sum((u - v) ** 2) for _, u, v in pairs))
    norm = np.sqrt(sum(np.sum(v ** 2) for _, _, v in pairs))
    return float(diff / norm) if norm else float(diff)


def _worst_leaf(a, b) -> tuple[float, str]:
    """The largest ``‖a − b‖ / ‖b‖`` of one float array of two pytrees, and its path: a small
    parameter's wrong gradient hides in :func:`_relative`'s norm over all of them."""
    worst = (0.0, "")
    for path, u, v in _floats(a, b):
        diff, norm = np.linalg.norm(u - v), np.linalg.norm(v)
        worst = max(worst, (float(diff / norm if norm else diff), path))
    return worst


def _attention(query, key, value, bias=None, *, scale):
    """:func:`jax.nn.dot_product_attention` without masks, its softmax in the inputs' dtype
    (JAX's takes it in float32 whatever the inputs)."""
    logits = jnp.einsum("...qhd,...khd->...hqk", query, key) * scale
    weights = jax.nn.softmax(logits if bias is None else logits + bias, axis=-1)
    return jnp.einsum("...hqk,...khd->...qhd", weights, value)


@contextlib.contextmanager
def _float64():
    """``jax_enable_x64``, and :func:`jax.nn.dot_product_attention` in float64 too."""
    with jax.enable_x64(True), mock.patch.object(jax.nn, "dot_product_attention", _attention):
        yield


def _identical(a, b) -> bool:
    return all(np.array_equal(np.asarray(u), np.asarray(v))
               for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _mesh(text: str) -> jax.sharding.Mesh:
    data, model = (int(n) for n in text.split("x"))
    return make_mesh(data, model)


def equivalence(name: str, *meshes: str) -> dict:
    if name in FLOAT64:
        with _float64():
            return _equivalence(name, meshes, jnp.float64)
    return _equivalence(name, meshes, jnp.float32)


def _equivalence(name: str, meshes: tuple[str, ...], dtype: DTypeLike) -> dict:
    kwargs, shape = SMALL[name]
    kwargs = {**kwargs, **KWARGS.get(name, {})}
    graphdef, params, rest = nnx.split(models.build(name, **kwargs, rngs=nnx.Rngs(0)),
                                       nnx.Param, ...)
    params, rest = jax.tree.map(
        lambda v: v.astype(dtype) if jnp.issubdtype(v.dtype, jnp.floating) else v, (params, rest))
    x = jax.random.normal(jax.random.key(1), (8, *shape[1:]), dtype)
    y = jax.random.normal(jax.random.key(2), (8, *shape[1:-1], kwargs["out_channels"]), dtype)
    tx = optax.chain(optax.add_decayed_weights(1e-4), optax.adam(1e-3))
    norms = (Normalizer.identity(shape[-1]), Normalizer.identity(kwargs["out_channels"]))

    def step(shardings):
        steps = Steps(graphdef, rest, tx, losses.relative_lp, *norms, shardings=shardings)
        state = (jax.tree.map(jnp.copy, params), tx.init(params))  # the step donates them
        if shardings is not None:
            state = place(state, (shardings.params, shardings.opt_state))
            return steps.train_step(*state, *place((x, y), (shardings.batch,) * 2),
                                    place(np.float32(1), shardings.replicated))
        return steps.train_step(*state, x, y, np.float32(1))

    # Compared on the host: eager arithmetic on model-sharded arrays would dispatch one small
    # program with an all-reduce per leaf, and XLA:CPU's client (jax 0.10.2) deadlocks with
    # a few hundred of them in flight on fake devices (the rendezvous aborts after 40 s).
    start = jax.device_get(params)
    ref_params, ref_opt, ref_loss, _ = jax.device_get(step(None))
    report = {}
    for text in meshes:
        shardings = StepShardings.build(_mesh(text), params, tx, sharding_rules(name))
        result = step(shardings)
        memory = device_bytes(result[0])
        new_params, new_opt, loss, finite = jax.device_get(result)
        assert bool(np.all(finite))
        worst, where = _worst_leaf(new_opt, ref_opt)
        report[text] = {
            "dtype": jnp.dtype(dtype).name,
            "loss": abs(float(loss) - float(ref_loss)) / abs(float(ref_loss)),
            "params": _relative(new_params, ref_params),
            "update": _relative(jax.tree.map(np.subtract, new_params, start),
                                jax.tree.map(np.subtract, ref_params, start)),
            "opt_state": _relative(new_opt, ref_opt),
            "worst_leaf": worst,
            "worst_leaf_at": where,
            "bit_identical": _identical(new_params, ref_params) and _identical(loss, ref_loss),
            "sharded_params": sum(not s.is_fully_replicated
                                  for s in jax.tree.leaves(shardings.params)),
            "param_bytes_per_device": memory,
        }
    return report


def _fno_state():
    model = models.build("fno", in_channels=1, out_channels=1, n_modes=(16, 16),
                         hidden_channels=32, n_layers=4, rngs=nnx.Rngs(0))
    params = nnx.state(model, nnx.Param)
    tx = optax.adam(1e-3)
    return params, tx


def memory() -> dict:
    params, tx = _fno_state()
    report = {"parameters": sum(int(p.size) for p in jax.tree.leaves(params))}
    for size in (1, 2, 4, 8):
        shardings = StepShardings.build(make_mesh(-1, size), params, tx,
                                        sharding_rules("fno"))
        report[f"model={size}"] = device_bytes(place(params, shardings.params))
    return report


def checkpoint(directory: str) -> dict:
    params, tx = _fno_state()
    opt_state = jax.tree.map(lambda v: v + 1, tx.init(params))  # not all zeros

    def placed(mesh_text):
        shardings = StepShardings.build(_mesh(mesh_text), params, tx, sharding_rules("fno"))
        return place({"params": params, "opt_state": opt_state},
                     {"params": shardings.params, "opt_state": shardings.opt_state})

    saver = Checkpoints(pathlib.Path(directory), CheckpointConfig(best_metric=None), writer=True)
    saver.save(1, placed("2x4"), {"step": 1})
    saver.close()
    report = {}
    reader = Checkpoints(pathlib.Path(directory), CheckpointConfig(best_metric=None))
    single = {"params": params, "opt_state": opt_state}
    for target in ("8x1", "4x2", "1x8", "single"):
        like = single if target == "single" else placed(target)
        state, meta = reader.restore(like)
        layouts = {str(leaf.sharding) == str(want.sharding)
                   for leaf, want in zip(jax.tree.leaves(state), jax.tree.leaves(like))}
        report[target] = {"equal": _identical(state, single), "meta": meta["step"],
                          "target_layout": layouts == {True}}
    reader.close()
    return report


def meshes() -> dict:
    report = {}
    for data, model in ((-1, 1), (-1, 2), (2, -1), (8, 1), (2, 2)):
        report[f"{data},{model}"] = dict(make_mesh(data, model, where="cfg").shape)
    for data, model in ((3, 1), (-1, 3), (4, 4), (16, 1), (-1, -1)):
        try:
            make_mesh(data, model, where="cfg")
            report[f"{data},{model}"] = "accepted"
        except UserError as err:
            report[f"{data},{model}"] = str(err)
    try:
        check_batch(make_mesh(4, 2), 6, where="cfg")
    except UserError as err:
        report["batch 6 on data 4"] = str(err)
    return report


def depthwise() -> dict:
    mesh = make_mesh(2, 4)
    replicated, rows = (NamedSharding(mesh, PartitionSpec(*spec)) for spec in ((), ("data",)))
    graphdef, params = nnx.split(DepthwiseConv(8, 7, rngs=nnx.Rngs(0)))
    x = jax.random.normal(jax.random.key(1), (8, 16, 16, 8))

    def grouped(params: nnx.State, x: jax.Array) -> jax.Array:
        return jax.lax.conv_general_dilated(x, params["kernel"][...], (1, 1), "SAME",
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                            feature_group_count=8)

    def ratio(apply) -> float:
        grad = jax.jit(jax.grad(lambda p, x: jnp.sum(apply(p, x) ** 2)))
        one = np.asarray(grad(params, x)["kernel"][...])
        placed = place(params, jax.tree.map(lambda _: replicated, params)), place(x, rows)
        sharded = np.asarray(grad(*placed)["kernel"][...])
        return float(np.vdot(sharded, one) / np.vdot(one, one))

    return {"DepthwiseConv": ratio(lambda p, x: nnx.merge(graphdef, p)(x)),
            "lax grouped conv": ratio(grouped)}


CHECKS = {"equivalence": equivalence, "memory": memory, "checkpoint": checkpoint,
          "meshes": meshes, "depthwise": depthwise}

if __name__ == "__main__":
    report = {"devices": jax.device_count()}
    for item in sys.argv[1:]:
        check, _, args = item.partition(":")
        report[check] = CHECKS[check](*(args.split(",") if args else ()))
    print(json.dumps(report))
