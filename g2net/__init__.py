"""g2net-pipeline's library: the domains the seed never had, and what the seed's files share.

The seed's flat modules (configs, datasets, transforms, architectures, models1d_pytorch, ...) and
the command-line entry points stay at the repository root; docs/DESIGN.md maps every module.

- ``g2net.simulation``: physics settings and priors, calibrated noise, the PyCBC and ml4gw engines,
  signal and polarisation banks, the competition-layout writer, continuous strain.
- ``g2net.search``: strain and trigger files, time slides, the search engine and its two
  statistics (a trained experiment, the matched filter), the search evaluation.
- ``g2net.filtering``: matched-filter templates, template banks, the baseline on 2 s examples.
- ``g2net.training``: the one fold loop (trainer, callbacks, runtime, pseudo-label targets).
- ``g2net.experiments``: running a config: runner, online training source, inference, throughput.
- ``g2net.spectral`` / ``g2net.whitening``: the PSD-estimate and whitening conventions.
- ``g2net.frontends``, ``g2net.mixing``, ``g2net.types``: time-frequency front-ends, mixup/cutmix,
  tensor shape aliases.
- ``g2net.evaluation``, ``g2net.stacking``: evaluation of experiments on a simulated test set; the stack.
"""
