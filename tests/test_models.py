"""The model registry, and a forward/backward smoke test of every registered model."""

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from nopx import models

# Small constructor arguments and an input shape for every registered model. A model added
# to the registry must add itself here (test_every_registered_model_has_a_smoke_case).
SMALL = {
    "fno": ({"in_channels": 2, "out_channels": 1, "n_modes": (4, 4), "hidden_channels": 8,
             "n_layers": 2}, (2, 12, 12, 2)),
    "sfno": ({"in_channels": 4, "out_channels": 3, "n_modes": (3, 3, 3), "hidden_channels": 4,
              "n_layers": 2, "latent_steps": 4}, (2, 12, 12, 4)),
    "tfno": ({"in_channels": 2, "out_channels": 1, "n_modes": (4, 4), "hidden_channels": 8,
              "n_layers": 2, "rank": 0.5}, (2, 12, 12, 2)),
    "mgtfno": ({"in_channels": 2, "out_channels": 1, "n_modes": (4, 4), "hidden_channels": 4,
                "n_layers": 1, "levels": 1}, (2, 16, 16, 2)),
    "mgno": ({"in_channels": 2, "out_channels": 1, "hidden_channels": 4, "n_layers": 1,
              "levels": [[1, 0], [1, 0]]}, (2, 12, 12, 2)),
    "scot": ({"in_channels": 2, "out_channels": 1, "hidden_channels": 8, "depths": (2, 1),
              "n_heads": (2, 2), "skip_blocks": (1, 0), "patch_size": 2, "window_size": 4,
              "time_conditioning": False}, (2, 16, 16, 2)),
    "deeponet": ({"in_channels": 2, "out_channels": 1, "sensors": (12, 12), "n_basis": 8,
                  "branch_layers": (16,), "trunk_layers": (16,)}, (2, 12, 12, 2)),
    "multionet": ({"in_channels": 2, "out_channels": 1, "sensors": (12, 12),
                   "hidden_channels": (8, 8, 8), "layer_weight_init": 1.0}, (2, 12, 12, 2)),
}


def test_registry_lists_and_builds():
    assert models.available() == sorted(models.available())
    assert "fno" in models.available()
    assert models.get("fno") is models.FNO
    model = models.build("fno", in_channels=1, out_channels=1, n_modes=(4,), hidden_channels=4,
                         rngs=nnx.Rngs(0))
    assert isinstance(model, models.FNO)
    assert set(models.__all__) >= {"FNO", "build", "register", "available"}


def test_unknown_name_is_a_value_error():
    with pytest.raises(ValueError, match="registered: .*fno"):
        models.build("fn0")


def test_register_refuses_a_taken_name():
    models.register("fno")(models.FNO)                     # same constructor again: fine
    with pytest.raises(ValueError, match="already registered"):
        models.register("fno")(lambda **kw: None)


def test_every_registered_model_has_a_smoke_case():
    assert set(models.available()) <= set(SMALL)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_registered_model_forward_and_gradient(name):
    kwargs, shape = SMALL[name]
    model = models.build(name, **kwargs, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.PRNGKey(0), shape)
    out = model(x)
    assert out.shape[:-1] == shape[:-1]
    grads = nnx.grad(lambda m: jnp.mean(m(x) ** 2))(model)
    assert all(bool(jnp.isfinite(g).all()) for g in jax.tree.leaves(grads))
