"""Regenerate the cross-check fixture of nopx's reader of The Well against The Well's own code.

Runs in a separate environment with The Well's package (it needs torch; nopx does not):

.. code-block:: bash

    python -m venv /tmp/well-venv
    /tmp/well-venv/bin/pip install torch the_well==1.2.0 h5py numpy
    /tmp/well-venv/bin/python tests/data/the_well/make_reference.py

It writes ``dummy.hdf5`` with The Well's own test-file writer
(``the_well.utils.dummy_data.write_dummy_data``, random values seeded here) and
``reference.json``: what The Well's ``WellDataset`` (full trajectories, no normalisation)
returns for each trajectory, as the SHA-256 of each array (float32, C order) plus its shape
and field names. ``tests/test_formats.py`` reads the same file with nopx and compares.
"""

from __future__ import annotations

import hashlib
import json
import pathlib

import numpy as np
import the_well
from the_well.data import WellDataset
from the_well.utils.dummy_data import write_dummy_data

HERE = pathlib.Path(__file__).resolve().parent


def digest(array: np.ndarray) -> dict:
    array = np.ascontiguousarray(array, dtype=np.float32)
    return {"shape": list(array.shape), "sha256": hashlib.sha256(array.tobytes()).hexdigest()}


def main() -> None:
    np.random.seed(0)                      # the writer draws with numpy's global generator
    data = HERE / "data"
    data.mkdir(exist_ok=True)
    write_dummy_data(str(data / "dummy.hdf5"))
    dataset = WellDataset(path=str(data), full_trajectory_mode=True, use_normalization=False)
    trajectories = []
    for index in range(len(dataset)):
        item = {key: value.numpy() for key, value in dataset[index].items()}
        trajectory = np.concatenate([item["input_fields"], item["output_fields"]])   # (T, X, Y, C)
        trajectories.append({
            "fields": digest(trajectory),
            "constant_fields": digest(item["constant_fields"]),                      # (X, Y, C)
            "time": np.concatenate([item["input_time_grid"],
                                    item["output_time_grid"]]).tolist(),
        })
    grid = dataset[0]["space_grid"].numpy()                                          # (X, Y, 2)
    reference = {"the_well_version": the_well.__version__,
                 "field_names": dataset.metadata.field_names,
                 "constant_field_names": dataset.metadata.constant_field_names,
                 "space_axes": [grid[:, 0, 0].tolist(), grid[0, :, 1].tolist()],   # x, y
                 "trajectories": trajectories}
    (HERE / "reference.json").write_text(json.dumps(reference, indent=1) + "\n")


if __name__ == "__main__":
    main()
