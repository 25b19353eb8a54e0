"""Keep the triggers of some time slides of a slid background: its zero lag, or fewer slides.

``python scripts/select_slides.py --events bg.hdf --slides 0 --output bg_zerolag.hdf``

search.py and matched_filter.py --strain record each trigger's slide (dataset ``slide``) and each
slide's analysed seconds (attribute ``slide_duration``). MLGWSC-1's own ``evaluate.py`` divides by
the foreground's duration, so it compares a foreground with an unslid background of the same
length: give it the zero lag of the slid search instead of searching the background again.
``--slides 0-15`` keeps a shorter background (to see what a rate rests on). The output is a trigger
file like the input (``duration`` = the kept slides' seconds, ``selected_slides`` names them).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from g2net.search.options import TRIGGER_SUFFIXES  # noqa: E402
from g2net.search.triggers import parse_slides, select_slides, write_triggers  # noqa: E402
from utils import cli_errors, output_file  # noqa: E402


@cli_errors
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", required=True, help="trigger file of a slid search")
    parser.add_argument("--slides", required=True, help="slides to keep: 0 (the zero lag), 0,3,5, 0-15")
    parser.add_argument("--output", required=True, help="trigger file to write")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    args = parser.parse_args(argv)
    slides = parse_slides(args.slides)
    output = output_file(args.output, "--output", overwrite=args.overwrite, inputs=[args.events],
                         suffixes=TRIGGER_SUFFIXES)
    time, stat, var, slide, attrs = select_slides(args.events, slides)
    write_triggers(output, time, stat, var, attrs, slide=slide)
    print(f"{len(time)} triggers of {len(slides)} slide(s), {attrs['duration']:g} s -> {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
