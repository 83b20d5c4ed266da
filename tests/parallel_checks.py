"""Sharding checks run in a process of their own with 8 CPU devices (tests/test_parallel.py).

``python parallel_checks.py CHECK[:ARG,ARG...] ...`` prints one JSON line, a report per check:

- ``equivalence:NAME,MESH,...`` (``MESH`` = ``DATAxMODEL``): one real train step
  (:class:`~nopx.training.steps.Steps`) of registered model ``NAME`` on one device and on each
  mesh; the relative differences of loss, parameters, update and Adam moments;
- ``memory``: per-device parameter bytes of an FNO (1.19M parameters) for each ``model`` size;
- ``checkpoint:DIR``: a state saved on one mesh restored onto other meshes and one device;
- ``meshes``: mesh sizes resolved from a config, and the errors of bad ones.
"""

from __future__ import annotations

import json
import pathlib
import sys

import jax

jax.config.update("jax_num_cpu_devices", 8)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

from nopx import losses, models  # noqa: E402
from nopx.config import CheckpointConfig  # noqa: E402
from nopx.errors import UserError  # noqa: E402
from nopx.parallel import StepShardings, check_batch, device_bytes, make_mesh, place  # noqa: E402
from nopx.training.build import sharding_rules  # noqa: E402
from nopx.training.checkpoint import Checkpoints  # noqa: E402
from nopx.training.data import Normalizer  # noqa: E402
from nopx.training.steps import Steps  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from test_models import SMALL  # noqa: E402


def _relative(a, b) -> float:
    """``‖a − b‖ / ‖b‖`` over the float arrays of two pytrees (step counts left out)."""
    pairs = [(u, v) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b))
             if jnp.issubdtype(v.dtype, jnp.floating)]
    diff = optax.global_norm([u - v for u, v in pairs])
    norm = optax.global_norm([v for _, v in pairs])
    return float(diff / norm) if norm else float(diff)


def _identical(a, b) -> bool:
    return all(np.array_equal(np.asarray(u), np.asarray(v))
               for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _mesh(text: str) -> jax.sharding.Mesh:
    data, model = (int(n) for n in text.split("x"))
    return make_mesh(data, model)


def equivalence(name: str, *meshes: str) -> dict:
    kwargs, shape = SMALL[name]
    graphdef, params, rest = nnx.split(models.build(name, **kwargs, rngs=nnx.Rngs(0)),
                                       nnx.Param, ...)
    x = jax.random.normal(jax.random.key(1), (8, *shape[1:]))
    y = jax.random.normal(jax.random.key(2), (8, *shape[1:-1], kwargs["out_channels"]))
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

    ref_params, ref_opt, ref_loss, _ = step(None)
    report = {}
    for text in meshes:
        shardings = StepShardings.build(_mesh(text), params, tx, sharding_rules(name))
        new_params, new_opt, loss, finite = step(shardings)
        assert bool(np.all(np.asarray(finite)))
        report[text] = {
            "loss": abs(float(loss) - float(ref_loss)) / abs(float(ref_loss)),
            "params": _relative(new_params, ref_params),
            "update": _relative(jax.tree.map(jnp.subtract, new_params, params),
                                jax.tree.map(jnp.subtract, ref_params, params)),
            "opt_state": _relative(new_opt, ref_opt),
            "bit_identical": _identical(new_params, ref_params) and _identical(loss, ref_loss),
            "sharded_params": sum(not s.is_fully_replicated
                                  for s in jax.tree.leaves(shardings.params)),
            "param_bytes_per_device": device_bytes(new_params),
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


CHECKS = {"equivalence": equivalence, "memory": memory, "checkpoint": checkpoint,
          "meshes": meshes}

if __name__ == "__main__":
    report = {"devices": jax.device_count()}
    for item in sys.argv[1:]:
        check, _, args = item.partition(":")
        report[check] = CHECKS[check](*(args.split(",") if args else ()))
    print(json.dumps(report))
