"""Training and evaluation: the importable core behind ``nopx train`` and ``nopx eval``.

>>> from nopx import training
>>> sorted(training.__all__)
['Checkpoints', 'Normalizer', 'Split', 'Steps', 'evaluate_run', 'load_run', 'load_splits', 'make_optimizer', 'make_schedule', 'train_and_evaluate']
"""

from nopx._malloc import tune_jax

tune_jax()  # before JAX's CPU backend starts (nopx/_malloc.py)

from nopx.training.checkpoint import Checkpoints
from nopx.training.data import Normalizer, Split, load_splits
from nopx.training.evaluate import evaluate_run, load_run
from nopx.training.loop import train_and_evaluate
from nopx.training.optim import make_optimizer, make_schedule
from nopx.training.steps import Steps

__all__ = [
    "Checkpoints",
    "Normalizer",
    "Split",
    "Steps",
    "evaluate_run",
    "load_run",
    "load_splits",
    "make_optimizer",
    "make_schedule",
    "train_and_evaluate",
]
