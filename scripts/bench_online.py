"""Online simulation figures for docs/benchmarks.md ("Online simulation"). Prints figures; no test.

``python scripts/bench_online.py rate [--device cpu|cuda] [--threads 1 2] [--batch 64]``
    generation alone (noise, waveforms, projection, SNR rescale; no transforms), examples/s, for
    IMRPhenomD and IMRPhenomPv2 at positive fraction 0.5 and 1.0 and for a polarisation bank.

``python scripts/bench_online.py train --config DemoOnline --seconds S [--limit_fold 0]``
    trains an online config with ``steps_per_epoch`` chosen so that its ``num_epochs`` take about
    ``S`` seconds of wall-clock (the step rate is measured first, validation included): the online
    side of the accuracy at equal wall-clock. Results go where train.py puts them
    (``G2NET_RESULTS_DIR``/``<config>``).

``python scripts/bench_online.py cost --configs Demo2detOnline Deep2detOnline [--threads 2]``
    what a model costs on this machine: seconds per online training step (generation included,
    and generation alone) and ms per searched window (inference on a batch of 128 raw 2 s
    windows, no preprocessing), with the parameter count: is it a CPU config or a GPU one?

``python scripts/bench_online.py real --experiments Demo DemoOnline [--real DIR]``
    AUC of trained experiments on the labelled real examples (``../shared/real-g2net-sample``).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from g2net.simulation import banks as sim_banks
from g2net.simulation import ml4gw_engine
from g2net.experiments import online as online_source
from g2net.simulation.priors import Priors  # noqa: E402
from g2net.experiments import runner
from g2net.training.runtime import setup_runtime, wrap_model
from utils import G2NetError, cli_errors, int_in, positive_float


def generation_rate(simulator: ml4gw_engine.OnlineSimulator, batch: int, repeats: int) -> float:
    g = ml4gw_engine.make_generator(simulator.device, 0)
    simulator.sample(g, batch)  # warm-up: buffers, FFT plans, CUDA kernels
    if simulator.device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(repeats):
        simulator.sample(g, batch)
    if simulator.device.type == "cuda":
        torch.cuda.synchronize()
    return batch * repeats / (time.perf_counter() - started)


def cmd_rate(args: argparse.Namespace) -> None:
    bank = None
    if args.bank:
        bank = sim_banks.load_polarization_bank(args.bank)
    print(f"device {args.device}, batch {args.batch}, {args.repeats} batches after one warm-up")
    for threads in args.threads:
        torch.set_num_threads(threads)
        for approximant in ("IMRPhenomD", "IMRPhenomPv2"):
            for fraction in (0.5, 1.0):
                simulator = ml4gw_engine.OnlineSimulator(Priors(positive_fraction=fraction), approximant,
                                                   device=args.device)
                rate = generation_rate(simulator, args.batch, args.repeats)
                print(f"threads {threads}  {approximant:13s} positive fraction {fraction:.1f}: "
                      f"{rate:9.1f} examples/s", flush=True)
        if bank is not None:
            simulator = ml4gw_engine.OnlineSimulator(Priors(positive_fraction=0.5), bank=bank, device=args.device)
            rate = generation_rate(simulator, args.batch, args.repeats)
            print(f"threads {threads}  bank {bank.metadata['approximant']} positive fraction 0.5: "
                  f"{rate:9.1f} examples/s", flush=True)


def online_step_seconds(base: type, warmup_steps: int, probe_steps: int,
                        budget: float = float("inf")) -> tuple[float, float]:
    """``(s per training step, s of it generating the batch)`` of an online config, through the
    trainer's own forward/backward and optimizer; the first steps (FFT plans, caches) untimed, then
    ``probe_steps`` timed or as many as ``budget`` seconds allow (at least two)."""
    runtime = setup_runtime(None, 0, base.deterministic)
    source = online_source.make_source(base, runtime.device, base.seed)
    model = wrap_model(runner.build_model(base), runtime, base)
    trainer = runner.make_trainer(base, model, Path("/dev/null"), runtime, lambda m: None, False)
    batches = iter(source)

    def step() -> None:  # generation + forward/backward, as in training
        x, y = next(batches)
        with trainer._autocast():
            loss, _ = trainer.hook.forward_train(trainer, x, y)
        trainer.optimizer.zero_grad()
        loss.backward()
        trainer.optimizer.step()

    for _ in range(warmup_steps):
        step()
    started, done = time.perf_counter(), 0
    while done < probe_steps and (done < 2 or time.perf_counter() - started < budget):
        step()
        done += 1
    per_step = (time.perf_counter() - started) / done
    started = time.perf_counter()
    for _ in range(done):
        next(batches)
    return per_step, (time.perf_counter() - started) / done


def cmd_cost(args: argparse.Namespace) -> None:
    configs = [runner.get_config(name) for name in args.configs]  # every name checked before timing
    offline = [cfg.name for cfg in configs if cfg.train_source == "files"]
    if offline:
        raise G2NetError(f"{', '.join(offline)} {'trains' if len(offline) == 1 else 'train'} on files, "
                         "not online batches: "
                         "python bench.py --config NAME measures their throughput")
    torch.set_num_threads(args.threads)
    print(f"{args.threads} threads; steps timed after {args.warmup_steps} untimed ones")
    for base in configs:
        name = base.name
        steps = base.online["steps_per_epoch"] * base.num_epochs
        per_step, generation = online_step_seconds(base, args.warmup_steps, args.probe_steps, args.seconds)
        model = runner.build_model(base).eval()
        windows = torch.randn(128, len(base.detectors), 4096)
        with torch.no_grad():
            model(windows)
            started = time.perf_counter()
            model(windows)
            window_ms = (time.perf_counter() - started) / 128 * 1e3
        params = sum(p.numel() for p in model.parameters())
        print(f"{name}: {params:,} parameters; {per_step:.3f} s a step of {base.batch_size} "
              f"({generation:.3f} s generating it), {steps:,} steps = {per_step * steps / 3600:.1f} h; "
              f"{window_ms:.2f} ms a searched window", flush=True)


def cmd_train(args: argparse.Namespace) -> None:

    base = runner.get_config(args.config)
    settings = online_source.online_settings(base)
    step_seconds, _ = online_step_seconds(base, args.warmup_steps, args.probe_steps)
    budget = args.seconds - args.validation_seconds * base.num_epochs
    steps = max(1, int(budget / base.num_epochs / step_seconds))
    print(f"{base.name}: {step_seconds:.3f} s a step (batch {base.batch_size}, generation included); "
          f"{steps} steps per epoch x {base.num_epochs} epochs for about {args.seconds:.0f} s", flush=True)
    cfg = type(base.__name__, (base,), {"name": base.name, "__module__": base.__module__,
                                        "online": dict(settings, steps_per_epoch=steps)})
    train_args = runner.build_parser("bench_online").parse_args(
        ["--config", base.name] + (["--limit_fold", str(args.limit_fold)] if args.limit_fold is not None else []))
    started = time.perf_counter()
    summary = runner.run_experiment(cfg, train_args)
    print(f"{base.name}: trained in {time.perf_counter() - started:.0f} s wall-clock "
          f"({steps * base.batch_size * base.num_epochs} generated examples); {summary}")


def cmd_real(args: argparse.Namespace) -> None:
    import pandas as pd

    from metrics import roc_auc
    from g2net.experiments.inference import predict_paths
    from g2net.experiments.runner import get_config
    from utils import example_path

    labels = pd.read_csv(args.real / "training_labels.csv", dtype={"id": str})
    paths = [str(example_path(args.real, "train", i)) for i in labels["id"]]
    for name in args.experiments:
        logits = predict_paths(get_config(name), paths)
        print(f"{name}: AUC {roc_auc(labels['target'].to_numpy(), logits[:, 0]):.4f} on "
              f"{len(labels)} real examples ({int(labels['target'].sum())} positives)")


@cli_errors
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rate = sub.add_parser("rate")
    rate.add_argument("--device", default="cpu")
    rate.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    rate.add_argument("--batch", type=int, default=64)
    rate.add_argument("--repeats", type=int, default=5)
    rate.add_argument("--bank", type=Path, default=None, help="a polarisation bank to time too")
    train = sub.add_parser("train")
    train.add_argument("--config", default="DemoOnline")
    train.add_argument("--seconds", type=float, required=True)
    train.add_argument("--validation-seconds", type=float, default=0.0,
                       help="wall-clock of one validation pass, subtracted per epoch")
    train.add_argument("--probe-steps", type=int, default=10)
    train.add_argument("--warmup-steps", type=int, default=3, help="untimed steps before the probe")
    train.add_argument("--limit_fold", type=int, default=None)
    cost = sub.add_parser("cost")
    cost.add_argument("--configs", nargs="+", default=["Demo2detOnline", "Deep2detOnline"])
    cost.add_argument("--threads", type=int_in(1), default=2)
    cost.add_argument("--probe-steps", type=int_in(2), default=20)
    cost.add_argument("--warmup-steps", type=int_in(0), default=2, help="untimed steps before the probe")
    cost.add_argument("--seconds", type=positive_float, default=30.0,
                      help="stop timing steps after this long (at least two; a slow model gets fewer)")
    real = sub.add_parser("real")
    real.add_argument("--experiments", nargs="+", required=True)
    real.add_argument("--real", type=Path,
                      default=Path(__file__).resolve().parents[1].parent / "shared" / "real-g2net-sample")
    args = parser.parse_args()
    {"rate": cmd_rate, "train": cmd_train, "cost": cmd_cost, "real": cmd_real}[args.command](args)


if __name__ == "__main__":
    main()
