"""The ``nopx`` command: parse arguments, dispatch, turn user errors into exit status 2.

Everything heavy (JAX, h5py, the models) is imported inside the sub-command handlers so
that ``nopx --help`` answers at once.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from collections.abc import Sequence

from nopx import __version__

USER_ERROR = 2
# data.format values (nopx.datagen.formats.FORMATS, here without importing h5py).
FORMAT_CHOICES = ("auto", "nopx", "fno-mat", "pdebench", "the-well")
INTERRUPTED = 130
ONE_TASK = "Start it as one task (srun --ntasks=1, or without srun) to leave the others free."

# XLA:CPU allocates a scratch buffer of hundreds of MB per train step; glibc's default serves it
# with mmap/munmap each time (~67k page faults, a quarter of the step's CPU on a 2-core box).
# Keeping it on the heap removes that. `import nopx` already applies the same settings with
# mallopt (nopx/_malloc.py). Given at process start they also cover what runs before that
# import; the last comparison (`nopx train` on darcy, 2026-11-30) put the re-exec at the same
# page faults and 3.1-3.3 s per epoch against 3.3-4.1 s without it, so train/eval keep it:
# glibc reads tunables only at process start.
TUNED_MALLOC = ("glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=17179869184:"
                "glibc.malloc.top_pad=67108864")


def _shard(text: str) -> tuple[int, int]:
    index, sep, count = text.partition("/")
    try:
        shard = (int(index), int(count))
    except ValueError:
        shard = (-1, 0)
    if not sep or not 0 <= shard[0] < shard[1]:
        raise argparse.ArgumentTypeError(f"expected i/N with 0 <= i < N, e.g. 0/4; got {text!r}")
    return shard


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _one_process_help(does: str) -> str:
    """What ``nopx eval``/``refine --help`` say of a multi-process launch (:func:`_one_process`)."""
    return (f"It runs as one process: started as several Slurm tasks (srun with more than one "
            f"task), task 0 {does} alone and the other tasks exit at once with status 0; on a "
            f"multi-host TPU VM slice it refuses (exit 2). {ONE_TASK}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nopx", description="Neural-operator PDE surrogates: generate data, train, evaluate.")
    parser.add_argument("--version", action="version", version=f"nopx {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train a model from a YAML experiment config")
    train.add_argument("--config", required=True, help="experiment YAML, e.g. experiments/darcy.yaml")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config value, e.g. --set optim.lr=3e-4 (repeatable)")
    train.add_argument("--resume", action="store_true",
                       help="continue the run in the run directory from its latest checkpoint")
    train.add_argument("--extend", type=_positive, metavar="N",
                       help="train a finished run N more epochs under a new schedule phase "
                            "(the schedule restarted over the N epochs); implies --resume")
    train.add_argument("--distributed", action="store_true",
                       help="join a multi-process run on JAX's distributed runtime (one nopx "
                            "train per process; automatic under Slurm and on TPU VM slices; "
                            "see README, 'Scaling out')")

    evaluate = commands.add_parser(
        "eval", help="evaluate a trained run on its test split",
        description="Evaluate a trained run on its test split (or --data) and write eval.json "
                    "into the run directory. " + _one_process_help("evaluates"))
    evaluate.add_argument("--run", required=True, help="run directory written by nopx train")
    evaluate.add_argument("--data", help="evaluate on this dataset instead of the run's")
    evaluate.add_argument("--resolution", type=_positive,
                          help="zero-shot: regenerate the test samples at this grid size")
    evaluate.add_argument("--plot", action="store_true",
                          help="write a PNG (input, target, prediction, error) into the run dir")

    datagen = commands.add_parser("datagen", help="generate a PDE dataset (HDF5) from a recipe")
    datagen.add_argument("--config",
                         help="datagen recipe, e.g. experiments/datagen/darcy_pwc.yaml (required)")
    datagen.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                         help="override a recipe value, e.g. --set samples=200 (repeatable)")
    datagen.add_argument("--out", help="output file (default: the recipe's 'out')")
    datagen.add_argument("--workers", type=_positive,
                         help="parallel solver processes (default: one per usable core, "
                              "or 1 for a small job)")
    datagen.add_argument("--shard", type=_shard, help="write only part i of N, e.g. 0/4")
    datagen.add_argument("--executor", choices=("local", "ray"), default="local",
                         help="where the solves run: this machine's processes, or Ray tasks "
                              "(pip install \"nopx[ray]\"); the file is the same")
    datagen.add_argument("--address", help="with --executor ray: the cluster to join (auto, "
                                           "ray://HOST:10001; default: a local Ray instance)")
    datagen.add_argument("--resume", action="store_true", help="complete an interrupted file")
    datagen_commands = datagen.add_subparsers(dest="datagen_command", metavar="merge")
    merge = datagen_commands.add_parser("merge", help="join the --shard i/N parts into one file")
    merge.add_argument("out", help="the merged output file")
    merge.add_argument("parts", nargs="+", help="the complete part files, one per shard")

    info = commands.add_parser(
        "info", help="describe and verify a dataset file (exit 0 only if it is complete and undamaged)")
    info.add_argument("file", help="a dataset: written by nopx datagen, or an FNO .mat, PDEBench or "
                                   "The Well file")
    info.add_argument("--format", choices=FORMAT_CHOICES, default="auto",
                      help="the file's layout (default: detected)")

    refine = commands.add_parser(
        "refine", help="Spectral-Refiner: fine-tune a trained run's spectral output layer on each "
                       "trajectory by its Navier-Stokes residual (no ground truth needed)",
        description="Spectral-Refiner: fine-tune a trained run's spectral output layer on each "
                    "trajectory by its Navier-Stokes residual and write the refined predictions "
                    "to --out. " + _one_process_help("refines"))
    refine.add_argument("--run", required=True, help="run directory of an sfno, or an fno/tfno "
                                                     "in space-time mode (FNO-3D)")
    refine.add_argument("--data", required=True, help="trajectories to refine (a nopx dataset)")
    refine.add_argument("--out", required=True, help="the nopx dataset to write")
    refine.add_argument("--samples", type=_positive,
                        help="refine the last N trajectories (default: all)")
    refine.add_argument("--batch", type=_positive, default=4,
                        help="trajectories refined together (memory grows with it; default 4)")
    refine.add_argument("--iterations", type=_positive, default=50, help="Adam steps (default 50)")
    refine.add_argument("--modes", type=_positive, nargs=3, metavar=("MX", "MY", "MT"),
                        help="modes of the enlarged layer in its own convention (default: the "
                             "whole grid in space)")
    refine.add_argument("--lr-weight", type=float, default=1e-4, help="Adam lr of the weights")
    refine.add_argument("--lr-bias", type=float, default=0.2, help="Adam lr of the spectral bias")
    refine.add_argument("--time-derivative", choices=("spectral", "fd"),
                        help="d/dt of the prediction (default: spectral for an sfno, fd otherwise)")
    refine.add_argument("--anchor", action="store_true",
                        help="with --time-derivative fd: measure the residual from the last "
                             "input slice on, tying the first predicted slice to the input")
    refine.add_argument("--subsample", type=_positive, default=1,
                        help="keep every k-th grid point (default: the file's grid)")
    refine.add_argument("--nu", type=float, help="viscosity (default: the file's recipe)")
    refine.add_argument("--forcing", choices=("fno", "kolmogorov", "none"),
                        help="forcing kind (default: the file's recipe)")
    refine.add_argument("--dt", type=float, help="time between slices (default: the file's recipe)")

    convert = commands.add_parser(
        "convert", help="write an FNO .mat, PDEBench or The Well file as a nopx dataset, or a "
                        "Poseidon checkpoint (--format poseidon) as a nopx run directory")
    convert.add_argument("source", metavar="IN",
                         help="the foreign dataset file, or the Poseidon checkpoint folder "
                              "(config.json + model.safetensors or pytorch_model.bin)")
    convert.add_argument("out", metavar="OUT",
                         help="the nopx dataset to write (a run directory for poseidon)")
    convert.add_argument("--format", choices=FORMAT_CHOICES + ("poseidon",), default="auto",
                         help="IN's layout (default: detected; poseidon is never guessed)")
    return parser


def _quiet_checkpoint_writers() -> None:
    """orbax's writer threads log every failed write (a full disk: hundreds of lines with
    tracebacks); the failure is re-raised by the next save and reported once, as a user
    error naming the folder and the fix."""
    import logging

    for name in ("absl", "asyncio"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def _run_train(args: argparse.Namespace) -> None:
    from nopx import config, distributed

    _quiet_checkpoint_writers()
    cfg = config.load(args.config, args.overrides)
    distributed.initialize(args.distributed)  # before anything touches a JAX device
    from nopx import training

    training.train_and_evaluate(cfg, resume=args.resume, extend=args.extend)


def _one_process(command: str, writes: str) -> bool:
    """Whether this process runs ``nopx command``, which has no multi-process mode: started
    as several (:func:`nopx.distributed.detect`), each would compute everything and write
    ``writes`` at the same time.

    Of several Slurm tasks task 0 runs it alone; the others say so and exit with status 0
    (a failed task would make ``srun --kill-on-bad-exit`` stop task 0). A multi-host TPU VM
    slice is refused instead: JAX brings up a slice's TPUs on all its hosts together, so
    one host cannot be relied on to run alone.
    """
    from nopx import distributed
    from nopx.errors import UserError

    launcher = distributed.detect()
    if launcher is None:
        return True
    if launcher == "tpu":
        hosts = os.environ["TPU_WORKER_HOSTNAMES"].count(",") + 1
        raise UserError(f"started on each of the {hosts} hosts of a TPU VM slice "
                        f"(TPU_WORKER_HOSTNAMES): nopx {command} has no multi-process mode, and "
                        f"every host would write {writes}; run nopx {command} as one process, "
                        "on a machine outside a multi-host launch (a single-host TPU VM, a GPU "
                        "or CPU machine)")
    task, tasks = int(os.environ["SLURM_PROCID"]), int(os.environ["SLURM_NTASKS"])
    if task:
        print(f"nopx {command}: Slurm task {task} of {tasks}: nopx {command} has no "
              "multi-process mode, task 0 runs it alone; this task exits", file=sys.stderr)
        return False
    print(f"nopx {command}: started as {tasks} Slurm tasks: this one (task 0) runs alone and "
          f"writes {writes}. {ONE_TASK}", file=sys.stderr)
    return True


def _run_eval(args: argparse.Namespace) -> None:
    if not _one_process("eval", "eval.json"):
        return
    from nopx import training

    training.evaluate_run(args.run, data=args.data, resolution=args.resolution, plot=args.plot)


def _run_refine(args: argparse.Namespace) -> None:
    if not _one_process("refine", args.out):
        return
    from nopx.training.refine_stage import refine_file

    summary = refine_file(args.run, args.data, args.out, samples=args.samples,
                          batch=args.batch, iterations=args.iterations, modes=args.modes,
                          lr_weight=args.lr_weight, lr_bias=args.lr_bias,
                          time_derivative=args.time_derivative, anchor=args.anchor,
                          subsample=args.subsample,
                          nu=args.nu, forcing=args.forcing, dt=args.dt)
    print(summary["report"])
    print(f"wrote {summary['out']}")


def _run_datagen(args: argparse.Namespace) -> None:
    from nopx import datagen
    from nopx.progress import Progress

    if args.datagen_command == "merge":
        print(f"wrote {datagen.merge(args.parts, args.out)}")
        return
    recipe = datagen.load_recipe(args.config, args.overrides)
    progress = Progress(label="datagen")
    try:
        path = datagen.generate(recipe, args.out, resume=args.resume, workers=args.workers,
                                shard=args.shard, progress=progress.update_count,
                                executor=args.executor, address=args.address)
    finally:
        progress.close()
    print(f"wrote {path}")


def _run_info(args: argparse.Namespace) -> None:
    from nopx import datagen

    print(datagen.info(args.file, format=args.format))
    # exit 2 (after the summary) unless it is complete
    datagen.open_dataset(args.file, format=args.format).close()


def _run_convert(args: argparse.Namespace) -> None:
    if args.format == "poseidon":
        from nopx.convert_poseidon import convert

        print(f"wrote {convert(args.source, args.out)}")
        return
    from nopx import datagen

    print(f"wrote {datagen.convert(args.source, args.out, format=args.format)}")


HANDLERS = {"train": _run_train, "eval": _run_eval, "refine": _run_refine,
            "datagen": _run_datagen, "info": _run_info,
            "convert": _run_convert}


def _reexec_with_tuned_malloc(argv: Sequence[str]) -> None:
    """Restart this command once with :data:`TUNED_MALLOC` (Linux/glibc; opt out by setting
    ``GLIBC_TUNABLES`` yourself, e.g. to an empty string)."""
    if not sys.platform.startswith("linux") or "GLIBC_TUNABLES" in os.environ:
        return
    env = {**os.environ, "GLIBC_TUNABLES": TUNED_MALLOC}
    sys.stdout.flush()
    sys.stderr.flush()
    # -P: do not put the current directory on sys.path (it may hold a source checkout).
    os.execve(sys.executable, [sys.executable, "-P", "-m", "nopx", *argv], env)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in ("train", "eval") and argv is None:
        _reexec_with_tuned_malloc(sys.argv[1:])
    if args.command == "datagen" and args.datagen_command is None and args.config is None:
        parser.error("nopx datagen: --config is required (or use `nopx datagen merge OUT PART...`)")
    from nopx.errors import UserError

    try:
        HANDLERS[args.command](args)
    except UserError as err:
        if args.debug:
            raise
        print(f"nopx {args.command}: error: {err}", file=sys.stderr)
        return USER_ERROR
    except KeyboardInterrupt:
        print(f"nopx {args.command}: interrupted; rerun with --resume to continue where it "
              "stopped", file=sys.stderr)
        return INTERRUPTED
    # The work is done and its files are closed: spare the interpreter's exit a last garbage
    # collection over every object numba, scipy or JAX made (0.3 s of a datagen run).
    gc.freeze()
    return 0


if __name__ == "__main__":
    sys.exit(main())
