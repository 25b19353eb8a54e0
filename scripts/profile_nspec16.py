"""Where a Nspec16 training step spends its time on a GPU: front-end, backbone, precision, layout.

    python scripts/profile_nspec16.py [--steps 20] [--batch-size 64]

Prints examples/s of forward+backward+Adam step for the CWT front-end alone, the timm backbone
alone on the 128x1024 image, and the whole model under fp16 / bf16, with and without channels_last.
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
    args = parser.parse_args()
    torch.backends.cudnn.benchmark = True
    b = args.batch_size
    params = dict(configs.Nspec16.model_params, pretrained=False)
    wave = lambda: torch.randn(b, 3, 4096, device="cuda")  # noqa: E731
    image = lambda: torch.randn(b, 3, 128, 1024, device="cuda")  # noqa: E731
    print(f"{torch.cuda.get_device_name()}  torch {torch.__version__}  batch {b}")
    model = configs.Nspec16.model(**params)
    print(f"front-end alone (fp32):            {rate(model.spectrogram, wave, None, False, args.steps, b):9.0f} examples/s")
    for dtype, cl in ((torch.float16, False), (torch.bfloat16, False), (torch.bfloat16, True), (torch.float16, True)):
        backbone = configs.Nspec16.model(**params)
        head_only = torch.nn.Sequential(backbone.backbone) if hasattr(backbone, "backbone") else None
        if head_only is not None:
            r = rate(head_only, image, dtype, cl, args.steps, b)
            print(f"backbone alone {str(dtype)[6:]:8s} cl={cl!s:5}:  {r:9.0f} examples/s")
        r = rate(configs.Nspec16.model(**params), wave, dtype, cl, args.steps, b)
        print(f"whole model    {str(dtype)[6:]:8s} cl={cl!s:5}:  {r:9.0f} examples/s")


if __name__ == "__main__":
    main()
