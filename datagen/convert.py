"""``nopx convert IN OUT``: write a foreign dataset (FNO ``.mat``, PDEBench, The Well) as a nopx file.

The nopx file holds the reader's fields (:mod:`nopx.datagen.formats`), the grid attributes
it knows, ``pde`` and, in the ``recipe`` attribute, where the data came from (the source
path and format and the reader's attributes, as YAML) in place of a datagen recipe;
``source_format`` names the format. Samples are copied a block at a time with checksums,
like a generated file; ``meta/params`` is empty and the solver statistics are zero.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np
import yaml

from nopx.datagen.dataset import DatasetWriter, open_dataset
from nopx.datagen.formats import resolve_format
from nopx.errors import UserError

__all__ = ["convert"]

# Samples copied per read/write.
BLOCK = 64
GRID_ATTRS = ("grid_shape", "grid_origin", "grid_spacing", "grid_extent", "times")


def convert(source: str | os.PathLike, out: str | os.PathLike, *, format: str = "auto") -> pathlib.Path:
    """Copy the foreign dataset ``source`` into a new nopx dataset ``out``; returns ``out``.

    Stored as float64 if any field is float64, else float32.

    Raises:
      UserError: ``source`` is unreadable, not in ``format``, or already a nopx dataset;
        ``out`` exists.
    """
    source, out = pathlib.Path(source), pathlib.Path(out)
    fmt = resolve_format(source, format)
    if fmt == "nopx":
        raise UserError(f"{source}: already a nopx dataset (or not recognised as FNO .mat, PDEBench or "
                        "The Well: name its layout with --format); nothing to convert")
    if out.exists():
        raise UserError(f"{out}: exists; delete it or choose another OUT")
    with open_dataset(source, format=fmt) as reader:
        attrs = reader.attrs
        shapes = {name: reader.field_shape(name) for name in reader.fields}
        dtype = "float64" if any(reader.dtype(f) == np.float64 for f in reader.fields) else "float32"
        provenance = {"converted_from": {"path": str(source.resolve()), "format": fmt,
                                         "attrs": {k: v for k, v in attrs.items()
                                                   if k not in (*GRID_ATTRS, "complete")}}}
        stored = {"pde": str(attrs.get("pde", fmt)), "source_format": fmt, "seed": 0, "first_index": 0,
                  "recipe": yaml.safe_dump(provenance, sort_keys=False),
                  **{key: attrs[key] for key in GRID_ATTRS if key in attrs}}
        n = reader.n_samples
        with DatasetWriter.create(out, n_samples=n, fields=shapes, n_params=0, dtype=dtype,
                                  attrs=stored) as writer:
            for start in range(0, n, BLOCK):
                stop = min(start + BLOCK, n)
                zeros = [0] * (stop - start)
                writer.write(range(start, stop), {f: reader.read_range(f, start, stop) for f in reader.fields},
                             np.zeros((stop - start, 0)), iterations=zeros, matvecs=zeros,
                             residual=[0.0] * len(zeros), seconds=[0.0] * len(zeros))
            writer.finish(rtol=0.0)
    return out
