"""Make MLGWSC-1 dataset 1 with the challenge's own generate_data.py, offline.

``python scripts/mlgwsc1_dataset.py --checkout /tmp/mlgwsc1 --duration 3600 --out ds1 --seed 1``

``--checkout`` is the challenge's repository (gwastro/ml-mock-data-challenge-1): a checkout, or a
bare/mirror git directory (its HEAD is read with ``git show``); nothing of it is part of this
project, and nothing is written into it. Its ``generate_data.py`` reads the segments to fill from
``segments.csv`` beside itself and downloads that file when it is missing, which fails offline.
Dataset 1 (Gaussian noise of PyCBC's ``aLIGOZeroDetHighPower`` PSD from 15 Hz in H1 and L1,
IMRPhenomXPHM injections every 24 +- 6 s drawn by ``pycbc_create_injections`` from ``ds1.ini``)
needs nothing else from the network, so this script:

1. copies ``generate_data.py``, ``segments.py`` and ``ds1.ini`` unchanged into a private folder
   (``--out/.partial/challenge``) and writes ``segments.csv`` beside them: one segment starting at
   ``--start-time`` (GPS; default 1238166018, the start of O3) and ``max(--duration, 7200)`` s long.
   generate_data.py skips segments shorter than 7200 s (its ``min_segment_duration``) and cuts the
   data to ``--duration``, but draws injections over the whole segment, so for ``--duration`` < 7200
   the injection file also lists injections after the data's end (evaluate_search.py and the
   challenge's evaluate.py count only those inside the data, 30 s from its ends);
2. makes ``ligo.segments`` importable (generate_data.py imports it; this project does not): when
   this interpreter lacks it, ``pip install ligo-segments`` into ``--deps`` (once; default
   ``~/.cache/g2net-pipeline/mlgwsc1-deps``) and puts that folder on PYTHONPATH; puts this
   interpreter's folder first on PATH (generate_data.py runs ``pycbc_create_injections``);
3. runs ``generate_data.py -d 1 -s SEED --duration DURATION`` with every HTTP(S) proxy pointed at a
   closed local port, so that any download it would still try fails at once instead of reaching out;
4. moves ``foreground.hdf``, ``background.hdf`` and ``injections.hdf`` into ``--out`` (a failed run
   leaves no file that looks complete; the foreground's ``background-file`` and ``injection-file``
   attributes are set to the moved files), opens both strain files with this project's
   ``StrainFile`` as a check and writes ``mlgwsc1_dataset.json`` (the command, the challenge's
   commit and the sha256 of its generate_data.py, the segments file, wall time, injection counts).
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import h5py
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from g2net.search.strain_io import StrainFile  # noqa: E402
from utils import G2NetError, cli_errors, output_folder  # noqa: E402

MIN_SEGMENT = 7200  # s: generate_data.py's get_noise skips shorter segments (min_segment_duration)


DEFAULT_START = 1238166018  # GPS, start of O3 (as simulate_strain.py)


PADDING = 30.0  # s at each end of the data without injections (generate_data.py's make_injections)


SEGMENTS_HEADER = "index,start,end"


OUTPUTS = {"-f": "foreground.hdf", "-b": "background.hdf", "-i": "injections.hdf"}


LIGO_SEGMENTS = "ligo-segments==1.4.0"  # the PyPI package of `ligo.segments`


CLOSED_PROXY = "http://127.0.0.1:9"  # the discard port: nothing listens, a download fails at once


CHALLENGE_FILES = ("generate_data.py", "segments.py", "ds1.ini")


DEFAULT_DEPS = Path.home() / ".cache" / "g2net-pipeline" / "mlgwsc1-deps"


def segments_csv(start: int, duration: int) -> str:
    """The segments file generate_data.py reads: a header line, then ``index,start,end`` rows (one
    segment, at least ``MIN_SEGMENT`` s long)."""
    return f"{SEGMENTS_HEADER}\n0,{start},{start + max(duration, MIN_SEGMENT)}\n"


def _git(checkout: Path, *args: str) -> str | None:
    try:
        result = subprocess.run(["git", f"--git-dir={checkout}", *args], capture_output=True,
                                check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return result.stdout.decode(errors="replace")


def challenge_files(checkout: str | Path) -> tuple[dict[str, bytes], str | None]:
    """The challenge's files generate_data.py needs for dataset 1, and the commit they are from
    (None when unknown): from a checkout's work tree, or from HEAD of a bare/mirror git directory."""
    checkout = Path(checkout)
    if not checkout.is_dir():
        raise G2NetError(f"--checkout {checkout} is not a folder; give a checkout (or mirror) of "
                         "gwastro/ml-mock-data-challenge-1")
    if (checkout / "generate_data.py").is_file():
        missing = [name for name in CHALLENGE_FILES if not (checkout / name).is_file()]
        if missing:
            raise G2NetError(f"--checkout {checkout} lacks {', '.join(missing)}; give a checkout of "
                             "the challenge's repository gwastro/ml-mock-data-challenge-1")
        files = {name: (checkout / name).read_bytes() for name in CHALLENGE_FILES}
        git_dir = checkout / ".git"
        commit = _git(git_dir, "rev-parse", "HEAD") if git_dir.exists() else None
        return files, commit.strip() if commit else None
    commit = _git(checkout, "rev-parse", "HEAD")
    if not commit:
        raise G2NetError(f"--checkout {checkout} holds no generate_data.py and is no git directory; "
                         "give a checkout (or mirror) of gwastro/ml-mock-data-challenge-1")
    files, missing = {}, []
    for name in CHALLENGE_FILES:
        try:
            files[name] = subprocess.run(["git", f"--git-dir={checkout}", "show", f"HEAD:{name}"],
                                         capture_output=True, check=True).stdout
        except subprocess.CalledProcessError:
            missing.append(name)
    if missing:
        raise G2NetError(f"--checkout {checkout}: its HEAD lacks {', '.join(missing)}; give a "
                         "checkout (or mirror) of gwastro/ml-mock-data-challenge-1")
    return files, commit.strip()


def _has_ligo_segments() -> bool:
    try:
        return importlib.util.find_spec("ligo.segments") is not None
    except ModuleNotFoundError:  # no `ligo` namespace at all
        return False


def environment(deps: Path, install: bool) -> dict[str, str]:
    """Environment for generate_data.py: PATH with pycbc_create_injections, PYTHONPATH with
    ligo.segments when this interpreter lacks it, proxies that refuse every download."""
    missing = [name for name in ("pycbc", "h5py", "numpy", "requests", "tqdm")
               if importlib.util.find_spec(name) is None]
    if missing:
        raise G2NetError(f"this interpreter ({sys.executable}) lacks {', '.join(missing)}, which "
                         "generate_data.py imports; run the script with the project's venv python")
    env = {**os.environ, "HTTP_PROXY": CLOSED_PROXY, "HTTPS_PROXY": CLOSED_PROXY,
           "http_proxy": CLOSED_PROXY, "https_proxy": CLOSED_PROXY, "NO_PROXY": "", "no_proxy": ""}
    bin_dir = Path(sys.executable).parent
    if not (bin_dir / "pycbc_create_injections").exists() and shutil.which("pycbc_create_injections") is None:
        raise G2NetError(f"pycbc_create_injections (installed with pycbc) is neither in {bin_dir} nor "
                         "on PATH; generate_data.py runs it to draw the injections")
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    if _has_ligo_segments():
        return env
    if not (deps / "ligo" / "segments").is_dir():
        if not install:
            raise G2NetError(f"this interpreter lacks ligo.segments (generate_data.py imports it) and "
                             f"{deps} holds none; pip install {LIGO_SEGMENTS}, or run without --no-install")
        print(f"installing {LIGO_SEGMENTS} (PyPI) into {deps}: generate_data.py imports ligo.segments",
              flush=True)
        try:
            subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--target", str(deps),
                            LIGO_SEGMENTS], check=True, env=os.environ.copy())
        except subprocess.CalledProcessError as exc:
            raise G2NetError(f"pip install {LIGO_SEGMENTS} failed (exit status {exc.returncode}); "
                             f"install it into {deps} or this interpreter yourself") from exc
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(deps), env.get("PYTHONPATH")]))
    return env


def make_dataset(checkout: str | Path, duration: int, out: str | Path, seed: int,
                 start: int = DEFAULT_START, overwrite: bool = False, install: bool = True,
                 deps: str | Path = DEFAULT_DEPS) -> dict[str, Any]:
    if duration <= 2 * PADDING:
        raise G2NetError(f"--duration {duration}: give more than {2 * PADDING:g} s (no injection lies "
                         f"within {PADDING:g} s of the data's ends)")
    if seed < 0:
        raise G2NetError(f"--seed {seed}: give a seed >= 0 (generate_data.py draws a random one for < 0)")
    files, commit = challenge_files(checkout)
    out = output_folder(out, "--out")
    finals = {flag: out / name for flag, name in OUTPUTS.items()}
    existing = [str(p) for p in finals.values() if p.exists()]
    if existing and not overwrite:
        raise G2NetError(f"{', '.join(existing)} exist; give --overwrite to replace them")
    env = environment(Path(deps).expanduser().resolve(), install)
    partial = out.resolve() / ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    private = partial / "challenge"
    private.mkdir(parents=True)
    for name, data in files.items():
        (private / name).write_bytes(data)
    segments = segments_csv(start, duration)
    (private / "segments.csv").write_text(segments)
    command = [sys.executable, str(private / "generate_data.py"), "-d", "1", "-s", str(seed),
               "--duration", str(duration), "--verbose"]
    for flag, name in OUTPUTS.items():
        command += [flag, str(partial / name)]
    print("+ " + " ".join(command), flush=True)
    began = time.time()
    try:
        try:
            subprocess.run(command, check=True, env=env, cwd=partial)
        except subprocess.CalledProcessError as exc:
            raise G2NetError(f"generate_data.py failed (exit status {exc.returncode}); see its output "
                             "above") from exc
        wall = time.time() - began
        for name in OUTPUTS.values():
            if not (partial / name).is_file():
                raise G2NetError(f"generate_data.py finished without writing {name}; see its output above")
        for probe in ("foreground.hdf", "background.hdf"):
            with StrainFile(partial / probe) as strain:
                seconds, detectors = strain.duration, strain.detectors
                spans = [[s.start_time, s.end_time] for s in strain.segments]
        for flag, name in OUTPUTS.items():
            (partial / name).replace(finals[flag])
        with h5py.File(finals["-f"], "a") as f:  # where generate_data.py's inputs are now
            f.attrs["background-file"] = str(finals["-b"])
            f.attrs["injection-file"] = str(finals["-i"])
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    with h5py.File(finals["-i"], "r") as f:
        tc = np.asarray(f["tc"][()], dtype=np.float64)
    in_data = np.zeros(len(tc), bool)
    counted = np.zeros(len(tc), bool)
    for lo, hi in spans:
        in_data |= (tc >= lo) & (tc <= hi)
        counted |= (tc >= lo + PADDING) & (tc <= hi - PADDING)
    record = {"generate_data_command": command, "checkout": str(checkout), "challenge_commit": commit,
              "generate_data_sha256": hashlib.sha256(files["generate_data.py"]).hexdigest(),
              "dataset": 1, "seed": seed, "duration": duration, "start_time": start,
              "segments_csv": segments, "wall_seconds": round(wall, 1),
              "strain_seconds": seconds, "detectors": list(detectors), "segments": spans,
              "injections_in_file": int(len(tc)), "injections_in_data": int(in_data.sum()),
              "injections_counted": int(counted.sum())}
    (out / "mlgwsc1_dataset.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {seconds:g} s of {','.join(detectors)} strain (dataset 1, seed {seed}) and "
          f"{record['injections_in_file']} injections ({record['injections_in_data']} inside the data, "
          f"{record['injections_counted']} of them {PADDING:g} s from its ends) to {out} in {wall:.0f} s")
    return record


@cli_errors
def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkout", required=True,
                        help="checkout or mirror (git dir) of gwastro/ml-mock-data-challenge-1")
    parser.add_argument("--duration", type=int, required=True, help="seconds of data (whole)")
    parser.add_argument("--out", required=True, help="folder for foreground/background/injections.hdf")
    parser.add_argument("--seed", type=int, required=True, help="generate_data.py's --seed (>= 0)")
    parser.add_argument("--start-time", type=int, default=DEFAULT_START, help="GPS start of the segment")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.add_argument("--deps", default=str(DEFAULT_DEPS),
                        help="folder ligo-segments is installed into when this interpreter lacks it")
    parser.add_argument("--no-install", action="store_true",
                        help="refuse instead of installing ligo-segments into --deps")
    args = parser.parse_args(argv)
    return make_dataset(args.checkout, args.duration, args.out, args.seed, args.start_time,
                        args.overwrite, not args.no_install, args.deps)


if __name__ == "__main__":
    main()
