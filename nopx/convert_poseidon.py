"""Poseidon's published scOT checkpoints as nopx runs: ``nopx convert --format poseidon``.

A Poseidon checkpoint (Herde et al. 2024; the HuggingFace folders ``camlab-ethz/Poseidon-T``,
``-B``, ``-L``) is a folder with ``config.json`` (a ``ScOTConfig``) and the weights in
``model.safetensors`` or ``pytorch_model.bin``. :func:`convert` rebuilds the same network as
:class:`nopx.models.ScOT`, copies every weight across and writes a run directory
(``config.yaml`` + an orbax checkpoint) that ``nopx eval --run`` and ``init_from`` take.
Neither file format needs torch: safetensors is a JSON header and raw little-endian
arrays; a ``.bin`` is a zip of a pickle whose tensors are rebuilt from their storages
by :func:`read_torch_bin`, which unpickles nothing but tensors and containers.

Names (Poseidon → nopx): ``embeddings.patch_embeddings.projection`` → ``embedding``,
``embeddings.norm`` → ``embedding_norm``; in a block ``layernorm_before/after`` →
``attention_norm/mlp_norm``, ``intermediate/output.dense`` → ``mlp.layers[0]/[1]``,
``attention.self.{query,key,value}`` → ``attention.*``,
``continuous_position_bias_mlp.0/.2`` → ``cpb_hidden/cpb_out``, ``attention.output.dense``
→ ``attention.output``; ``encoder.layers[s].downsample`` → ``merging[s]``; decoder stage
``k`` runs deepest first: ``decoder.layers[k]`` → ``decoder[S-1-k]`` and its ``upsample`` →
``expansion[S-2-k]``; ``residual_blocks`` → ``skips`` (``dwconv``, ``pwconv1/2``, layer scale
``weight``); ``patch_recovery.projection/mixup`` → ``recovery/mixup``. A conditioned norm's
``weight``/``bias`` Linear(1 → C) maps are ``scale``/``shift``. Layouts: Linear
``(out, in)`` → ``(in, out)``, conv ``OIHW`` → ``HWIO``, transposed conv ``(in, out, H, W)``
→ ``(H, W, in, out)`` flipped in space (flax does not flip a transposed kernel), the logit
scale ``(heads, 1, 1)`` → ``(heads,)``.

What the run does not carry: Poseidon resamples every input to ``image_size`` (128²) in
Fourier space before the network; the nopx model runs on the grid it is given, so feed it
``image_size`` grids (resample outside) to reproduce Poseidon's numbers. Its inputs are
normalised by per-dataset constants that are not in the checkpoint: the run stores identity
normalisers, so give it data normalised as Poseidon's was. The lead time is the model's own
(Poseidon: time / 20 on its fluid data, i.e. in ``[0, 1]``); the run's
``data.time.time_scale`` is 1. Edit ``data`` in the written ``config.yaml`` (``path``,
``inputs``, ``targets``, ``time``) to evaluate or fine-tune on a dataset.
"""

from __future__ import annotations

import json
import pathlib
import pickle
import re
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np

from nopx.errors import UserError

_SAFETENSORS_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4",
                       "I16": "<i2", "I8": "i1", "U8": "u1", "BOOL": "?"}


def read_safetensors(path: str | pathlib.Path) -> dict[str, np.ndarray]:
    """All tensors of a ``.safetensors`` file as NumPy arrays (bfloat16 read as float32).

    Layout: an 8-byte little-endian header length, a JSON header ``{name: {dtype, shape,
    data_offsets: [begin, end]}}`` (offsets relative to the end of the header), the data.
    """
    path = pathlib.Path(path)
    raw = path.read_bytes()
    try:
        length = int.from_bytes(raw[:8], "little")
        header = json.loads(raw[8:8 + length])
        data = memoryview(raw)[8 + length:]
        tensors = {}
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            begin, end = entry["data_offsets"]
            chunk = data[begin:end]
            if entry["dtype"] == "BF16":   # the top half of a float32
                array = (np.frombuffer(chunk, "<u2").astype(np.uint32) << 16).view(np.float32)
            else:
                array = np.frombuffer(chunk, _SAFETENSORS_DTYPES[entry["dtype"]])
            tensors[name] = array.reshape(entry["shape"])
    except (ValueError, KeyError, TypeError) as err:
        raise UserError(f"{path}: not a readable safetensors file ({err}); pass the "
                        "model.safetensors of a Poseidon checkpoint folder") from None
    return tensors


_STORAGE_DTYPES = {"DoubleStorage": np.float64, "FloatStorage": np.float32,
                   "HalfStorage": np.float16, "LongStorage": np.int64, "IntStorage": np.int32,
                   "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8,
                   "BoolStorage": np.bool_}


def _rebuild_tensor(storage: np.ndarray, offset: int, size: tuple[int, ...],
                    stride: tuple[int, ...], *_: Any) -> np.ndarray:
    """torch's ``_rebuild_tensor_v2``: a strided view of a flat storage, copied."""
    item = storage.itemsize
    view = np.lib.stride_tricks.as_strided(storage[offset:], size, [s * item for s in stride])
    return np.array(view)


class _TensorUnpickler(pickle.Unpickler):
    """Unpickles a torch ``state_dict``: tensors, parameters and dicts, nothing else."""

    def __init__(self, file: Any, archive: zipfile.ZipFile, root: str) -> None:
        super().__init__(file)
        self.archive, self.root = archive, root

    def find_class(self, module: str, name: str) -> Any:
        if module == "collections" and name == "OrderedDict":
            return OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return lambda data, *_: data
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}: a state_dict "
                                     "holds tensors only")

    def persistent_load(self, pid: tuple) -> np.ndarray:
        _, dtype, key, _, _ = pid      # ('storage', storage type, key, device, numel)
        return np.frombuffer(self.archive.read(f"{self.root}/data/{key}"), dtype)


def read_torch_bin(path: str | pathlib.Path) -> dict[str, np.ndarray]:
    """The tensors of a torch ``state_dict`` saved with ``torch.save`` (zip format), without
    torch; only tensors and dicts are unpickled."""
    path = pathlib.Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            pickled = next(n for n in archive.namelist() if n.endswith("/data.pkl"))
            root = pickled.rsplit("/", 1)[0]
            with archive.open(pickled) as file:
                state = _TensorUnpickler(file, archive, root).load()
    except (zipfile.BadZipFile, StopIteration, pickle.UnpicklingError, KeyError) as err:
        raise UserError(f"{path}: not a torch state_dict in zip format ({err or 'no data.pkl'}); "
                        "pass a Poseidon checkpoint folder with model.safetensors or "
                        "pytorch_model.bin") from None
    return {name: np.asarray(value) for name, value in state.items()}


def scot_kwargs(config: dict[str, Any], where: str) -> dict[str, Any]:
    """:class:`nopx.models.ScOT` arguments for a Poseidon ``config.json``; refuses the
    options nopx's scOT does not implement."""
    unsupported = {"residual_model": ("convnext", "ConvNeXt skip blocks"),
                   "learn_residual": (False, "no residual learning"),
                   "use_absolute_embeddings": (False, "no absolute position embedding"),
                   "qkv_bias": (True, "query/value biases"),
                   "hidden_act": ("gelu", "exact GELU"),
                   "layer_norm_eps": (1e-5, "layer norm epsilon 1e-5")}
    for key, (wanted, meaning) in unsupported.items():
        if config.get(key, wanted) != wanted:
            raise UserError(f"{where}: {key} = {config[key]!r}; nopx's scOT implements "
                            f"Poseidon's published setting only ({meaning}: {key} = {wanted!r})")
    if any(config.get("pretrained_window_sizes") or ()):
        raise UserError(f"{where}: pretrained_window_sizes {config['pretrained_window_sizes']} "
                        "are not supported (Poseidon's checkpoints use 0)")
    try:
        return {"in_channels": int(config["num_channels"]),
                "out_channels": int(config["num_out_channels"]),
                "hidden_channels": int(config["embed_dim"]), "depths": list(config["depths"]),
                "n_heads": list(config["num_heads"]),
                "skip_blocks": [int(n) for n in config["skip_connections"]],
                "patch_size": int(config["patch_size"]), "window_size": int(config["window_size"]),
                "mlp_ratio": float(config["mlp_ratio"]),
                "time_conditioning": bool(config["use_conditioning"])}
    except KeyError as err:
        raise UserError(f"{where}: no key {err} (a Poseidon ScOTConfig has num_channels, "
                        "num_out_channels, embed_dim, depths, num_heads, skip_connections, "
                        "patch_size, window_size, mlp_ratio, use_conditioning)") from None


_BLOCK = {"attention.self.query": "attention.query", "attention.self.key": "attention.key",
          "attention.self.value": "attention.value",
          "attention.self.continuous_position_bias_mlp.0": "attention.cpb_hidden",
          "attention.self.continuous_position_bias_mlp.2": "attention.cpb_out",
          "attention.self": "attention",   # its logit_scale
          "attention.output.dense": "attention.output", "layernorm_before": "attention_norm",
          "layernorm_after": "mlp_norm", "intermediate.dense": "mlp.layers.0",
          "output.dense": "mlp.layers.1"}


def _block(rest: str) -> str:
    """A Swin-V2 block's parameter name in nopx (the longest known module prefix)."""
    prefix = max((p for p in _BLOCK if rest.startswith(p + ".")), key=len, default=None)
    return rest if prefix is None else _BLOCK[prefix] + rest[len(prefix):]


def _module_path(key: str, stages: int) -> str | None:
    """The nopx path of Poseidon parameter ``key`` up to its leaf name (or ``None``)."""
    rules: list[tuple[str, Callable[[re.Match], str]]] = [
        (r"embeddings\.patch_embeddings\.projection\.(.+)", lambda m: f"embedding.{m[1]}"),
        (r"embeddings\.norm\.(.+)", lambda m: f"embedding_norm.{m[1]}"),
        (r"encoder\.layers\.(\d+)\.blocks\.(\d+)\.(.+)",
         lambda m: f"encoder.{m[1]}.blocks.{m[2]}.{_block(m[3])}"),
        (r"encoder\.layers\.(\d+)\.downsample\.(.+)", lambda m: f"merging.{m[1]}.{m[2]}"),
        (r"decoder\.layers\.(\d+)\.blocks\.(\d+)\.(.+)",
         lambda m: f"decoder.{stages - 1 - int(m[1])}.blocks.{m[2]}.{_block(m[3])}"),
        (r"decoder\.layers\.(\d+)\.upsample\.(.+)",
         lambda m: f"expansion.{stages - 2 - int(m[1])}.{m[2]}"),
        (r"residual_blocks\.(\d+)\.(\d+)\.weight", lambda m: f"skips.{m[1]}.{m[2]}.layer_scale"),
        (r"residual_blocks\.(\d+)\.(\d+)\.dwconv\.(.+)",
         lambda m: f"skips.{m[1]}.{m[2]}.depthwise.{m[3]}"),
        (r"residual_blocks\.(\d+)\.(\d+)\.pwconv(\d)\.(.+)",
         lambda m: f"skips.{m[1]}.{m[2]}.mlp.layers.{int(m[3]) - 1}.{m[4]}"),
        (r"residual_blocks\.(\d+)\.(\d+)\.norm\.(.+)",
         lambda m: f"skips.{m[1]}.{m[2]}.norm.{m[3]}"),
        (r"patch_recovery\.projection\.(.+)", lambda m: f"recovery.{m[1]}"),
        (r"patch_recovery\.mixup\.(.+)", lambda m: f"mixup.{m[1]}"),
    ]
    for pattern, rename in rules:
        match = re.fullmatch(pattern, key)
        if match:
            return rename(match)
    return None


def _leaf(path: str) -> str:
    """Poseidon leaf names to flax ones: Linear/conv ``weight`` → ``kernel``, the
    conditioned norm's ``weight``/``bias`` maps → ``scale``/``shift``, a plain LayerNorm's
    ``weight`` → ``norm.scale``."""
    path = re.sub(r"norm\.weight\.(weight|bias)$", r"norm.scale.\1", path)
    path = re.sub(r"norm\.bias\.(weight|bias)$", r"norm.shift.\1", path)
    path = re.sub(r"norm\.weight$", "norm.norm.scale", path)
    path = re.sub(r"norm\.bias$", "norm.norm.bias", path)
    return re.sub(r"\.weight$", ".kernel", path)


def _layout(path: str, array: np.ndarray) -> np.ndarray:
    """A torch array in flax's layout for the parameter at ``path``."""
    if path.endswith("logit_scale"):
        return array.reshape(-1)
    if path.startswith("recovery.") and array.ndim == 4:   # (in, out, H, W) → (H, W, in, out)
        return array.transpose(2, 3, 0, 1)[::-1, ::-1]
    if array.ndim == 4:                                     # OIHW → HWIO
        return array.transpose(2, 3, 1, 0)
    if array.ndim == 2:                                     # Linear (out, in) → (in, out)
        return array.T
    return array


def poseidon_params(tensors: dict[str, np.ndarray], like: Any, *, where: str) -> Any:
    """``like`` (the ``nnx.State`` of the parameters of a :class:`~nopx.models.ScOT`) filled
    with the Poseidon ``tensors``; every parameter on both sides must be matched."""
    from flax import nnx

    flat = dict(nnx.to_flat_state(like))
    ours = {".".join(map(str, key)): key for key in flat}
    stages = 1 + max(int(k.split(".")[1]) for k in ours if k.startswith("encoder."))
    filled: dict[str, np.ndarray] = {}
    for key, array in tensors.items():
        if key.endswith(("relative_coords_table", "relative_position_index")):
            continue   # buffers the model recomputes
        module = _module_path(key, stages)
        path = None if module is None else _leaf(module)
        if path not in ours:
            raise UserError(f"{where}: parameter {key} has no counterpart in nopx's scOT "
                            f"(mapped to {path}); is this a Poseidon scOT checkpoint?")
        target = flat[ours[path]]
        value = _layout(path, np.asarray(array, np.float32))
        if value.shape != target.shape:
            raise UserError(f"{where}: {key} has shape {array.shape}, nopx's {path} needs "
                            f"{target.shape} (in torch layout); config.json does not match "
                            "the weights")
        filled[path] = value
    missing = sorted(set(ours) - set(filled))
    if missing:
        raise UserError(f"{where}: no weights for {', '.join(missing[:3])}"
                        f"{' ...' if len(missing) > 3 else ''}; is the checkpoint complete?")
    return nnx.from_flat_state([(key, flat[key].replace(filled[path]))
                                for path, key in ours.items()])


def load_poseidon(source: str | pathlib.Path) -> tuple[dict[str, Any], Any]:
    """``(scot_kwargs, model)``: a :class:`~nopx.models.ScOT` holding the checkpoint's weights."""
    from flax import nnx

    from nopx.models import ScOT

    source = pathlib.Path(source)
    folder = source if source.is_dir() else source.parent
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise UserError(f"{folder}: no config.json; pass a Poseidon checkpoint folder (config.json "
                        "with model.safetensors or pytorch_model.bin), e.g. a download of "
                        "camlab-ethz/Poseidon-T")
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as err:
        raise UserError(f"{config_path}: not JSON ({err})") from None
    kwargs = scot_kwargs(config, str(config_path))
    weights = source if source.is_file() else next(
        (folder / n for n in ("model.safetensors", "pytorch_model.bin") if (folder / n).is_file()),
        None)
    if weights is None:
        raise UserError(f"{folder}: no model.safetensors or pytorch_model.bin beside config.json")
    tensors = (read_safetensors if weights.suffix == ".safetensors" else read_torch_bin)(weights)
    try:   # shapes only: every value is replaced by the checkpoint's
        model = nnx.eval_shape(lambda: ScOT(**kwargs))
    except ValueError as err:
        raise UserError(f"{config_path}: {err}") from None
    params = poseidon_params(tensors, nnx.state(model, nnx.Param), where=str(weights))
    nnx.update(model, params)
    return kwargs, model


def convert(source: str | pathlib.Path, out: str | pathlib.Path) -> pathlib.Path:
    """Write the Poseidon checkpoint ``source`` (its folder, or its weights file) as the
    nopx run directory ``out``: ``config.yaml`` (an all2all run of the converted scOT,
    lead times in the model's unit, identity normalisers, data fields named ``c0, c1, ...``
    until edited) and one checkpoint (step 0) holding the weights."""
    from flax import nnx

    from nopx import __version__
    from nopx.config import dump, from_mapping
    from nopx.training.all2all import identity_normalizers
    from nopx.training.checkpoint import Checkpoints
    from nopx.training.optim import make_optimizer

    out = pathlib.Path(out)
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out}: exists and is not empty; name a new run directory")
    kwargs, model = load_poseidon(source)
    fields = [f"c{i}" for i in range(kwargs["in_channels"])]
    cfg = from_mapping({
        "name": out.name,
        "data": {"path": "data/poseidon.h5", "inputs": fields, "targets": fields,
                 "normalize": False, "time": {"mode": "all2all", "time_scale": 1.0}},
        "model": {"name": "scot", **kwargs},
        "optim": {"lr": 5e-5, "weight_decay": 1e-6},   # Poseidon's fine-tuning backbone lr
        "train": {"run_dir": str(out)},
        "checkpoint": {"best_metric": None}}, where=f"conversion of {source}")
    params = nnx.state(model, nnx.Param)
    x_norm, y_norm = identity_normalizers(len(fields))
    meta = {"model": {"name": "scot", "kwargs": kwargs}, "output_steps": 1, "time_scale": 1.0,
            "normalizers": {"x": x_norm.to_json(), "y": y_norm.to_json()},
            "nopx_version": __version__, "step": 0, "epoch": 0,
            "converted_from": str(pathlib.Path(source).absolute())}
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(
        f"# Converted from the Poseidon checkpoint {source} by `nopx convert --format "
        "poseidon`.\n# Set data.path, data.inputs/targets (Poseidon's channel order) and "
        "data.time before\n# `nopx eval --run` or using it as init_from.\n" + dump(cfg))
    checkpoints = Checkpoints(out, cfg.checkpoint, writer=True)
    try:
        tx = make_optimizer(cfg.optim, 1, 1)
        checkpoints.save(0, {"params": params, "opt_state": tx.init(params)}, meta)
    finally:
        checkpoints.close()
    return out
