"""Where a Nspec16 training step spends its time on a GPU: front-end, backbone, precision, layout.

    python scripts/profile_nspec16.py [--steps 20] [--batch-size 64] [--full]

Prints examples/s of forward+backward+Adam step for the CWT front-end alone (direct convolution
against the FFT), and the whole model under bf16 / fp16 with channels_last; ``--full`` adds the
timm backbone alone on the 128x1024 image and the layouts without channels_last.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import configs  # noqa: E402


def rate(module: torch.nn.Module, make_input, dtype, channels_last: bool, steps: int, batch: int) -> float:
    module = module.cuda().train()
    if channels_last:
        module = module.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    x = make_input()
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    for i in range(steps + 5):
        if i == 5:
            torch.cuda.synchronize()
            tic = time.perf_counter()
        with torch.autocast("cuda", dtype=dtype, enabled=dtype is not None):
            loss = module(x).float().mean()
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - tic)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--full", action="store_true",
                        help="also the fp16 / no-channels_last grid and the backbone alone")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("error: profile_nspec16.py measures a CUDA GPU and none is visible; "
                         "run it on a GPU machine (bench.py works on the CPU)")
    torch.backends.cudnn.benchmark = True
    b = args.batch_size
    wave = lambda: torch.randn(b, 3, 4096, device="cuda")  # noqa: E731
    image = lambda: torch.randn(b, 3, 128, 1024, device="cuda")  # noqa: E731

    def build(method: str) -> torch.nn.Module:
        params = dict(configs.Nspec16.model_params, pretrained=False)
        params["spec_params"] = dict(params["spec_params"], method=method)
        return configs.Nspec16.model(**params)

    print(f"{torch.cuda.get_device_name()}  torch {torch.__version__}  batch {b}")
    for method in ("conv", "fft"):
        r = rate(build(method).spectrogram, wave, None, False, args.steps, b)
        print(f"CWT front-end alone, {method:4s} (fp32):         {r:9.0f} examples/s")
    grid = [(torch.bfloat16, True), (torch.float16, True)]
    if args.full:
        grid += [(torch.float16, False), (torch.bfloat16, False)]
    for dtype, cl in grid:
        name = f"{str(dtype)[6:]:8s} cl={cl!s:5}"
        if args.full:
            r = rate(torch.nn.Sequential(build("fft").backbone), image, dtype, cl, args.steps, b)
            print(f"backbone alone     {name}:         {r:9.0f} examples/s")
        for method in ("conv", "fft") if dtype == torch.bfloat16 and cl else ("fft",):
            r = rate(build(method), wave, dtype, cl, args.steps, b)
            print(f"whole model, {method:4s}  {name}:         {r:9.0f} examples/s")


if __name__ == "__main__":
    main()
