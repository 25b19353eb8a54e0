"""Cost of searching continuous strain (docs/benchmarks.md, "Cost of the strain searches"). Prints
figures; no test.

``python scripts/bench_strain_search.py mf --templates 600 --seconds 1200 --slides 30 [--threads 2]``
    the strain matched filter (``g2net.search.matched_filter``) with N templates drawn from the
    simulator's prior (masses 10-50, aligned spins; the first one the longest, 10+10 Msun with
    spins 0.5: the cost depends on the number of templates and the longest one, not on where
    the others lie) or those of ``--bank-file``, on simulated H1+L1 noise: seconds of strain per wall second and per CPU second at zero lag and with time slides
    (the reuse path), the time spent in ``prepare`` (per detector) and ``combine`` (per slide), peak
    memory, and the extrapolated cost of one day of strain with 30 slides (a month of background)
    and of one day of foreground.

``python scripts/bench_strain_search.py net --config Demo2det --seconds 600 --slides 30 [--stride 0.5]``
    the same for search.py's statistic with a freshly initialised model of the config (one fold;
    its cost does not depend on its weights).

Run it from the repository root; the machine's load is printed beside every figure.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from g2net.filtering import reference_bank  # noqa: E402
from g2net.simulation.priors import Priors  # noqa: E402
from g2net.search import engine  # noqa: E402
from g2net.search import matched_filter as strain_mf  # noqa: E402
from g2net.search.options import SearchOptions  # noqa: E402
from g2net.search.strain_io import StrainFile, StrainWriter  # noqa: E402
from g2net.search.timeslides import TimeSlides  # noqa: E402
from g2net.simulation.noise import StreamingNoise  # noqa: E402
from utils import SAMPLE_RATE  # noqa: E402

DETECTORS = ("H1", "L1")


DAY = 86400.0


def load() -> str:
    return "load " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def write_noise(path: Path, seconds: float, seed: int = 0) -> Path:
    n = int(seconds * SAMPLE_RATE)
    noise = StreamingNoise(DETECTORS, np.random.default_rng(seed))
    writer = StrainWriter(path, DETECTORS, dtype=np.float32)
    key = writer.create_segment(1_000_000_000.0, n, 1.0 / SAMPLE_RATE)
    chunk = 64 * int(SAMPLE_RATE)
    for start in range(0, n, chunk):
        writer.write(key, start, noise(min(chunk, n - start)))
    writer.close()
    return path


class Timed:
    """Wraps a scorer's ``prepare``/``combine``/``__call__`` with wall and CPU timers."""

    def __init__(self, scorer):
        self.scorer = scorer
        self.wall = {"prepare": 0.0, "combine": 0.0}
        self.cpu = {"prepare": 0.0, "combine": 0.0}
        for name in ("prepare", "combine"):
            setattr(self, name, self._timed(name, getattr(scorer, name)))
        self._call = self._timed("prepare", scorer.__call__)

    def _timed(self, name, method):
        def call(*args, **kwargs):
            w, c = time.perf_counter(), time.process_time()
            out = method(*args, **kwargs)
            self.wall[name] += time.perf_counter() - w
            self.cpu[name] += time.process_time() - c
            return out
        return call

    def __call__(self, batch, psd):
        """The scorer's own call, used where windows are not prepared detector by detector (the
        matched filter's zero lag: chunks combined as they are filtered), timed as prepare."""
        return self._call(batch, psd)

    def for_pass(self, index):
        """Pass ``index`` of a multi-pass scorer, timed into the same totals."""
        timed = Timed(self.scorer.for_pass(index))
        timed.wall, timed.cpu = self.wall, self.cpu
        return timed

    def __getattr__(self, name):
        return getattr(self.scorer, name)


def measure(strain_path: Path, scorer, options: SearchOptions, label: str) -> dict:
    timed = Timed(scorer)
    w, c = time.perf_counter(), time.process_time()
    with StrainFile(strain_path) as strain:
        result = engine.search_strain(strain, timed, options, progress=False)
    wall, cpu = time.perf_counter() - w, time.process_time() - c
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    seconds = result["duration"]
    print(f"{label}: {seconds:,.0f} s of strain ({result['windows']} windows, reused "
          f"{result['reused_detectors']}) in {wall:.1f} s wall, {cpu:.1f} s CPU: "
          f"{seconds / wall:,.1f} s of strain per wall s, {seconds / cpu:,.1f} per CPU s; "
          f"prepare {timed.wall['prepare']:.1f} s wall / {timed.cpu['prepare']:.1f} s CPU, "
          f"combine {timed.wall['combine']:.1f} / {timed.cpu['combine']:.1f}; "
          f"peak RSS so far {peak:,.0f} MB; {load()}", flush=True)
    return {"wall": wall, "cpu": cpu, "seconds": seconds, "prepare_cpu": timed.cpu["prepare"],
            "combine_cpu": timed.cpu["combine"], "prepare_wall": timed.wall["prepare"],
            "combine_wall": timed.wall["combine"], "windows": result["windows"], "result": result}


def extrapolate(zero: dict, slid: dict, slides: int, strain_seconds: float, label: str) -> None:
    """Cost of a day of foreground and of a day with 30 slides from the measured parts: prepare
    scales with the strain searched once per detector, combine and the rest with slid strain."""
    prepare_per_s = slid["prepare_cpu"] / strain_seconds  # every detector's windows once
    rest_per_s = (slid["cpu"] - slid["prepare_cpu"]) / slid["seconds"]  # per second of slid strain
    fg = zero["cpu"] / zero["seconds"] * DAY
    bg = prepare_per_s * DAY + rest_per_s * 31 * DAY
    wall_ratio = slid["wall"] / slid["cpu"]
    print(f"{label} extrapolated: one day of foreground {fg / 3600:.2f} CPU-hours; one day with 30 "
          f"slides (31 days of background) {bg / 3600:.2f} CPU-hours (prepare {prepare_per_s * DAY / 3600:.2f}, "
          f"combine and the rest {rest_per_s * 31 * DAY / 3600:.2f}), about {bg * wall_ratio / 3600:.2f} "
          f"wall hours at this run's wall/CPU ratio {wall_ratio:.2f}", flush=True)


def prior_bank(n: int, seed: int = 0) -> reference_bank.ReferenceBank:
    """N templates drawn from the simulator's prior, the first the longest (10+10, spins 0.5)."""
    priors, rng = Priors(), np.random.default_rng(seed)
    masses = rng.uniform(*priors.mass_range, size=(2, n))
    spins = rng.uniform(*priors.spin_range, size=(2, n))
    masses[:, 0], spins[:, 0] = priors.mass_range[0], priors.spin_range[1]
    return reference_bank.ReferenceBank(Path("prior"), masses.max(0), masses.min(0), spins[0], spins[1],
                                        "IMRPhenomD", 20.0)


def cmd_mf(args: argparse.Namespace) -> None:
    bank = reference_bank.load(args.bank_file) if args.bank_file else prior_bank(args.templates)
    with tempfile.TemporaryDirectory() as tmp:
        path = write_noise(Path(tmp) / "noise.hdf", args.seconds)
        w = time.perf_counter()
        scorer = strain_mf.StrainMatchedFilter(bank, DETECTORS, device="cpu", window_seconds=args.window or None,
                                               threshold=args.threshold,
                                               **({"template_chunk": args.chunk} if args.chunk else {}))
        step = scorer.slide_step(DETECTORS)
        psd = args.psd_duration or strain_mf.PSD_WINDOWS * scorer.window_seconds
        base = dict(window=scorer.n, stride=scorer.stride, psd_duration=psd, batch_size=args.batch_size,
                    threshold=args.threshold, slide_span=scorer.slide_span)
        slid_options = SearchOptions(**base, slides=TimeSlides(args.slides, step))
        scorer.templates_per_pass = min(len(bank), args.per_pass or max(1, int(
            strain_mf.memory_budget() // scorer.bytes_per_template(slid_options, 2, SAMPLE_RATE))))
        print(f"{len(bank)} templates ({scorer.templates_per_pass} a pass), longest "
              f"{scorer.template_seconds:.2f} s, {scorer.window_seconds} s windows, stride "
              f"{scorer.stride:.3f} s, PSD over {psd:g} s, {args.threads} threads; scorer set up in "
              f"{time.perf_counter() - w:.1f} s; {load()}", flush=True)
        # zero lag as matched_filter.py searches it: every chunk combined as it is filtered
        zero = measure(path, scorer, SearchOptions(**base, reuse_detectors=False), "zero lag")
        slid = measure(path, scorer, slid_options, f"zero lag + {args.slides} slides (step {step:.3f} s)")
        per100 = 100.0 / len(bank)
        print(f"per 100 templates: {zero['cpu'] / zero['seconds'] * DAY * per100:,.0f} CPU s per day "
              f"of strain at zero lag; with slides {slid['prepare_cpu'] / args.seconds * DAY * per100:,.0f} "
              f"CPU s of filtering per day of strain (once per detector) + "
              f"{(slid['cpu'] - slid['prepare_cpu']) / slid['seconds'] * DAY * per100:,.0f} per day of "
              f"slid strain (combining, PSDs, reading); {load()}", flush=True)
        extrapolate(zero, slid, args.slides, args.seconds, f"matched filter, {len(bank)} templates")


def cmd_net(args: argparse.Namespace) -> None:
    import configs
    from g2net.search import network

    cfg = getattr(configs, args.config)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["G2NET_RESULTS_DIR"] = tmp
        folder = Path(tmp) / f"{cfg.__name__}_debug"
        folder.mkdir()
        torch.manual_seed(0)
        model = cfg.model(**cfg.model_params)
        torch.save({"model": model.state_dict(), "state": {"finished": True, "epoch": 0}}, folder / "fold0.pt")
        scorer, window = network.config_scorer(cfg, debug=True, gpu=None)
        torch.set_num_threads(args.threads)  # setup_runtime may have set it
        path = write_noise(Path(tmp) / "noise.hdf", args.seconds)
        print(f"{args.config} (fresh weights, one fold), stride {args.stride} s, {args.threads} threads; {load()}")
        base = dict(window=window, stride=args.stride, psd_duration=32.0, batch_size=args.batch_size)
        zero = measure(path, scorer, SearchOptions(**base), "zero lag")
        slid = measure(path, scorer, SearchOptions(**base, slides=TimeSlides(args.slides, 5.0)),
                       f"zero lag + {args.slides} slides (step 5 s)")
        extrapolate(zero, slid, args.slides, args.seconds, f"{args.config}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    mf = sub.add_parser("mf")
    mf.add_argument("--templates", type=int, default=600)
    mf.add_argument("--bank-file", default=None, help="a bank file instead of --templates from the prior")
    mf.add_argument("--psd-duration", type=float, default=0.0, help="0: the filter's default (four windows)")
    mf.add_argument("--per-pass", type=int, default=0, help="templates a pass (0: what 1 GiB holds)")
    mf.add_argument("--window", type=int, default=0, help="s per filtered window (0: the filter's choice)")
    mf.add_argument("--chunk", type=int, default=0, help="templates per chunk (0: the filter's default)")
    mf.add_argument("--threshold", type=float, default=None,
                    help="network SNR below which no output is kept (the slides then add templates only "
                         "where a bound reaches it)")
    net = sub.add_parser("net")
    net.add_argument("--config", default="Demo2det")
    net.add_argument("--stride", type=float, default=0.5)
    for p in (mf, net):
        p.add_argument("--seconds", type=float, default=1200.0, help="s of H1+L1 noise searched")
        p.add_argument("--slides", type=int, default=30)
        p.add_argument("--threads", type=int, default=2)
        p.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    {"mf": cmd_mf, "net": cmd_net}[args.command](args)


if __name__ == "__main__":
    main()
