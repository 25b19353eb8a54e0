"""Mine hard negatives: the noise windows a trained model scores highest, as a training pool.

``python scripts/mine_hard_negatives.py --events BG_EVENTS.hdf --strain BACKGROUND.hdf --top K
--out POOL.npy [--overwrite]``

Search a noise-only background strain (not the one the search is evaluated on) with
``search.py``, then take the ``K`` loudest triggers and write the raw strain windows they were
scored on: window start = ``time - merger_offset`` (the trigger file's attribute), 4096 samples at
2048 Hz, rows H1, L1, V1 (absent detectors zero), float32 ``(K, 3, 4096)``, loudest first. A JSON
beside it (``POOL.json``) records the source files, ``K`` and the range of their statistic. Online
training replaces a fraction of each batch's negatives by these windows
(``online['hard_negatives']``, ``hard_negative_fraction``; docs/online.md), so the network sees
the noise that fools it most instead of only average noise.

Search the background at zero lag (``--slides 0``): a trigger file does not say which time slide
produced a trigger, so the window cannot be cut from slid strain, and files searched with slides
are refused. Nothing is lost with simulated Gaussian noise: the detectors' noise is independent at
any lag, so zero-lag noise windows are statistically the same as slid ones (with real data, where
coincident glitches differ, one would need the lag of each trigger).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from g2net.search.strain_io import Segment, StrainFile, parse_detectors  # noqa: E402
from g2net.search.triggers import read_triggers  # noqa: E402
from utils import (DETECTORS, N_SAMPLES, SAMPLE_RATE, G2NetError, _same_path, atomic_save_npy,  # noqa: E402
                   atomic_write, cli_errors, output_file, path_arg, positive_int)

NEEDED_ATTRS = ("input", "detectors", "merger_offset", "slides")  # what search.py records


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def check_trigger_file(events: Path, attrs: dict[str, Any], strain: StrainFile) -> float:
    """The merger offset of a search.py trigger file of ``strain`` at zero lag and "loudest" timing
    (a trigger's time is then its window start plus that offset); anything else is refused."""
    missing = [name for name in NEEDED_ATTRS if name not in attrs]
    if missing:
        raise G2NetError(f"{events} does not record {', '.join(missing)}; mine a trigger file that "
                         "search.py of this version wrote")
    search = _text(attrs.get("search", "search.py"))
    if search != "search.py":
        raise G2NetError(f"{events} was written by {search}, not search.py: its times are not window "
                         "starts plus the merger offset; mine a search.py trigger file")
    if int(attrs["slides"]) > 0:
        raise G2NetError(f"{events} was searched with --slides {int(attrs['slides'])}: a trigger "
                         "does not say which time slide produced it, so its window cannot be cut; "
                         "search the background at zero lag (--slides 0; with Gaussian noise the "
                         "zero-lag windows are statistically the same as slid ones)")
    timing = _text(attrs.get("timing", "loudest"))
    if timing != "loudest":
        raise G2NetError(f"{events} was searched with --trigger-time {timing}: its times are not "
                         "window start + merger offset; search the background with the default "
                         "(loudest) timing")
    detectors = parse_detectors(_text(attrs["detectors"]))
    if detectors != strain.detectors:
        raise G2NetError(f"{events} searched detectors {','.join(detectors)} but {strain.path} holds "
                         f"{','.join(strain.detectors)}; give the strain the search read")
    # the recorded path is as search.py was given it (maybe relative to another folder): the same
    # file when it exists from here, else the same file name; and the same simulate_strain.py run
    recorded = Path(_text(attrs["input"]))
    same = _same_path(recorded, strain.path) if recorded.exists() else recorded.name == strain.path.name
    if not same:
        raise G2NetError(f"{events} is a search of {recorded}, not of {strain.path}; give the strain "
                         "the search read (--strain)")
    searched_run = attrs.get("strain_run_id")
    if searched_run is not None and strain.run_id is not None and _text(searched_run) != strain.run_id:
        raise G2NetError(f"{events} is a search of strain from simulate_strain.py run "
                         f"{_text(searched_run)}, but {strain.path} is from run {strain.run_id}; give "
                         "the strain the search read (--strain)")
    offset = float(attrs["merger_offset"])
    if not math.isfinite(offset):
        raise G2NetError(f"{events}: attribute merger_offset is {offset}; search the background again")
    return offset


def window_position(strain: StrainFile, start: float) -> tuple[Segment, int]:
    """The segment and first sample of the window starting at GPS ``start``; a window that runs off
    the strain or does not start on a sample is refused."""
    for seg in strain.segments:
        first = (start - seg.start_time) * strain.sample_rate
        if -0.5 <= first < seg.n_samples:
            index = int(round(first))
            if abs(first - index) > 1e-2:  # GPS times in float64: ~1e-3 sample of rounding
                raise G2NetError(f"{strain.path}: a window starting at {start:.6f} s does not start on "
                                 f"a sample of segment {seg.key}; the trigger file is not a search "
                                 "of this strain with its recorded merger_offset")
            if index + N_SAMPLES <= seg.n_samples:
                return seg, index
            break
    raise G2NetError(f"a window at {start:.4f}-{start + N_SAMPLES / strain.sample_rate:.4f} s runs off "
                     f"the strain of {strain.path} (segments "
                     f"{', '.join(f'{s.start_time:g}-{s.end_time:g}' for s in strain.segments)}); "
                     "the trigger file is not a search of this strain with its recorded merger_offset")


def mine(strain: StrainFile, starts: np.ndarray) -> np.ndarray:
    """Raw strain windows ``(len(starts), 3, 4096)`` float32 starting at GPS ``starts``, rows in
    H1, L1, V1 order, absent detectors zero; every window is located before any is read."""
    positions = [window_position(strain, float(t)) for t in starts]
    rows = [DETECTORS.index(d) for d in strain.detectors]
    pool = np.zeros((len(starts), len(DETECTORS), N_SAMPLES), dtype=np.float32)
    for k, (seg, index) in enumerate(positions):
        pool[k, rows] = strain.read(seg, index, index + N_SAMPLES)
    return pool


@cli_errors
def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=path_arg, required=True,
                        help="search.py trigger file of a noise-only strain, searched at zero lag")
    parser.add_argument("--strain", type=path_arg, required=True, help="the strain it searched")
    parser.add_argument("--top", type=positive_int, required=True, help="how many loudest triggers")
    parser.add_argument("--out", type=path_arg, required=True, help="pool to write (.npy)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing pool")
    args = parser.parse_args(argv)
    inputs = [args.events, args.strain]
    out = output_file(args.out, "--out", overwrite=args.overwrite, inputs=inputs, suffixes=(".npy",))
    record_path = output_file(out.with_suffix(".json"), "--out", overwrite=args.overwrite, inputs=inputs)
    time, stat, _, attrs = read_triggers(args.events)
    with StrainFile(args.strain, sample_rate=SAMPLE_RATE) as strain:
        offset = check_trigger_file(args.events, attrs, strain)
        if args.top > len(time):
            raise G2NetError(f"--top {args.top}: {args.events} holds only {len(time)} triggers")
        loudest = np.lexsort((time, -stat))[:args.top]  # loudest first, ties: the earlier
        pool = mine(strain, time[loudest] - offset)
    record = {"events": str(args.events), "strain": str(args.strain), "top": int(args.top),
              "triggers": len(time), "stat_range": [float(stat[loudest].min()), float(stat[loudest].max())],
              "merger_offset": offset, "detectors": list(strain.detectors),
              "config": _text(attrs.get("config", "")), "order": "loudest first",
              "strain_run_id": strain.run_id}
    atomic_save_npy(out, pool)
    atomic_write(record_path, lambda f: f.write(json.dumps(record, indent=2) + "\n"), mode="w")
    print(f"{args.top} hard negatives (stat {record['stat_range'][0]:.3g} to "
          f"{record['stat_range'][1]:.3g}) from {args.events} -> {out}")
    return record


if __name__ == "__main__":
    main()
