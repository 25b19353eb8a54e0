"""Throughput of one config on this machine: is the GPU fed, and how close is training to the model's
own ceiling?

``python bench.py --config NAME [--steps N] [--batch-size B] [--json FILE] [--synthetic]``

Four figures, in examples per second, all through the project's real code (``runtime.make_loader``,
``Trainer.train_one_epoch``, ``Trainer.evaluate``):

- ``data``: iterating the training DataLoader alone (reading, per-example transforms, collation,
  pinning), nothing on the device;
- ``model``: training steps on a few real batches already on the device (GPU transforms, forward,
  backward, optimizer step under the trainer's AMP / channels_last settings): the ceiling;
- ``train``: one epoch of training steps fed by the DataLoader (end to end);
- ``valid``: one validation pass (inference) fed by its DataLoader;

plus the peak GPU memory of the device phases. ``--setting original`` reproduces the original
pipeline (per-file reads, scipy preprocessing in the main process, fp16, no channels_last);
``--setting optimized`` reads the memory-mapped cache with DataLoader workers, runs Normalize /
BandPass / Whiten batched on the GPU (:func:`gpu_transforms`), bf16 and channels_last.
``--synthetic`` first writes a noise-only folder in the competition layout (``--data-dir``, else
``<results-dir>/bench_noise``, else a temporary folder removed at the end) and its caches, so the
benchmark needs no competition data. ``--summarize A.json B.json ...`` prints the
results of several runs as one markdown table. See docs/gpu.md.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any, Sequence

from g2net.experiments.throughput import PHASES, SETTINGS, _noise_root, make_noise_dataset, run_bench, summarize
from utils import (G2NetError, atomic_write, cli_errors, input_dir, nonnegative_int, output_file,
                   output_folder, path_arg, positive_int)


def _on_off(text: str) -> bool:
    if text not in ("on", "off"):
        raise argparse.ArgumentTypeError(f"expected on or off, got {text!r}")
    return text == "on"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="experiment class in configs.py")
    parser.add_argument("--steps", type=positive_int, default=None,
                        help="training batches per phase (default: one epoch of --n-train)")
    parser.add_argument("--batch-size", type=positive_int, default=None, help="default: the config's")
    parser.add_argument("--json", type=path_arg,
                        help="write the results (with --summarize: all of them) to this JSON file")
    parser.add_argument("--synthetic", action="store_true",
                        help="write (or reuse) a noise-only data set in --data-dir first")
    parser.add_argument("--data-dir", type=path_arg,
                        help="input folder (default: G2NET_INPUT_DIR; with --synthetic: "
                             "<results-dir>/bench_noise)")
    parser.add_argument("--results-dir", type=path_arg, default=None,
                        help="scratch folder (default: a temporary folder, removed at the end)")
    parser.add_argument("--n-train", type=positive_int, default=5120)
    parser.add_argument("--n-valid", type=positive_int, default=1280)
    parser.add_argument("--seed", type=nonnegative_int, default=0)
    parser.add_argument("--setting", choices=sorted(SETTINGS), default="config",
                        help="config: as configured; original: per-file reads, CPU preprocessing in "
                             "the main process, fp16; optimized: cache, workers, GPU preprocessing, "
                             "bf16, channels_last")
    parser.add_argument("--num-workers", type=nonnegative_int, default=None,
                        help="override the setting's workers")
    parser.add_argument("--cache", type=_on_off, default=None, metavar="on|off",
                        help="on/off: read prep_data's memory-mapped cache instead of the .npy files")
    parser.add_argument("--gpu-transform", type=_on_off, default=None, metavar="on|off",
                        help="on/off: run Normalize/BandPass/Whiten batched on the device")
    parser.add_argument("--amp", choices=["auto", "bf16", "fp16", "off"], default=None,
                        help="autocast dtype (auto: bf16 where supported)")
    parser.add_argument("--channels-last", type=_on_off, default=None, metavar="on|off", help="on/off")
    parser.add_argument("--compile", default=None, metavar="off|on|MODE",
                        help="off, on, or a torch.compile mode (reduce-overhead = CUDA graphs)")
    parser.add_argument("--frontend-method", choices=["auto", "fft", "conv"], default=None,
                        help="convolution of a wavelet front-end (spec_params method): fft or direct")
    parser.add_argument("--label", default=None, help="name of this run in the table (default: --setting)")
    parser.add_argument("--phases", default=",".join(PHASES),
                        help=f"comma-separated subset of {','.join(PHASES)}")
    parser.add_argument("--prepare-only", action="store_true",
                        help="with --synthetic: write the noise data set and stop")
    parser.add_argument("--summarize", type=path_arg, nargs="+", metavar="JSON",
                        help="print the results of earlier runs as a markdown table")
    parser.add_argument("--markdown", type=path_arg,
                        help="with --summarize: also write the table to this file")
    return parser


def check_outputs(args: argparse.Namespace) -> None:
    """Where the results go, decided before any work: ``--json`` and ``--markdown`` are files that
    are not one of the results being summarized nor in the data folder read, and a noise folder
    to write is a writable folder."""
    if args.summarize:
        reads, folders = list(args.summarize), []
    elif args.synthetic:
        reads, folders = [], [_noise_root(args)] if _noise_root(args) is not None else []
        if folders:
            output_folder(folders[0], "--data-dir" if args.data_dir else "--results-dir")
    else:
        reads, folders = [], [args.data_dir or input_dir()]
    if args.json is not None:
        output_file(args.json, "--json", overwrite=True, inputs=reads, input_folders=folders,
                    suffixes=(".json",))
    if args.markdown is not None:
        output_file(args.markdown, "--markdown", overwrite=True, inputs=reads, input_folders=folders)


@cli_errors
def main(argv: Sequence[str] | None = None) -> dict[str, Any] | str:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.markdown is not None and not args.summarize:
        parser.error("--markdown goes with --summarize")
    check_outputs(args)
    if args.summarize:
        return summarize([str(p) for p in args.summarize], args.markdown, args.json)
    if args.prepare_only:
        if not args.synthetic:
            parser.error("--prepare-only goes with --synthetic")
        if _noise_root(args) is None:
            parser.error("--prepare-only keeps the noise data set for later runs: say where with "
                         "--data-dir or --results-dir")
        return str(make_noise_dataset(_noise_root(args), args.n_train + args.n_valid, seed=args.seed))
    if not args.config:
        parser.error("--config NAME is required (python train.py --list shows the configs)")
    args.phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    unknown = sorted(set(args.phases) - set(PHASES))
    if unknown:
        raise G2NetError(f"unknown --phases {', '.join(unknown)}; choose from {', '.join(PHASES)}")
    if args.synthetic and _noise_root(args) is None:
        # scratch data never lands in the current folder: a temporary one, removed at the end
        with tempfile.TemporaryDirectory(prefix="g2net_bench_") as scratch:
            args.results_dir = Path(scratch)
            return _bench(args)
    return _bench(args)


def _bench(args: argparse.Namespace) -> dict[str, Any]:
    def save(partial: dict[str, Any]) -> None:
        atomic_write(args.json, lambda f: f.write(json.dumps(partial, indent=2, default=str)), mode="w")

    result = run_bench(args, save=save if args.json else None)
    if args.json:
        save(result)
        print(f"results in {args.json}")
    return result


if __name__ == "__main__":
    main()
