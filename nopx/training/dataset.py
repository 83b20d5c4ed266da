"""Make sure the dataset a config trains on exists: generate or complete it from its recipe."""

from __future__ import annotations

import pathlib
from collections.abc import Callable

from nopx.config import DataConfig
from nopx.errors import UserError
from nopx.progress import Progress


def ensure_dataset(cfg: DataConfig, *, log: Callable[[str], None] = print) -> pathlib.Path:
    """Return ``cfg.path``, generating it from ``cfg.generate`` when missing or incomplete."""
    from nopx import datagen

    path = pathlib.Path(cfg.path)
    if path.exists():
        with datagen.open_dataset(path, require_complete=False, format=cfg.format) as reader:
            complete = bool(reader.attrs.get("complete", False))
        if complete:
            return path
        if cfg.generate is None:
            raise UserError(f"{path}: the dataset is incomplete and data.generate names no "
                            "recipe; finish it with `nopx datagen --config <recipe> --resume`")
        log(f"completing {path} from {cfg.generate}")
        resume = True
    elif cfg.generate is None:
        raise UserError(f"data.path {path} does not exist; generate it with `nopx datagen "
                        "--config <recipe>` or name a recipe in data.generate")
    else:
        log(f"generating {path} from {cfg.generate}")
        resume = False
    recipe = datagen.load_recipe(cfg.generate)
    reporter = Progress(label="datagen")
    try:
        return datagen.generate(recipe, str(path), resume=resume, progress=reporter.update_count)
    finally:
        reporter.close()
