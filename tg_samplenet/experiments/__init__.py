r"""What the examples and benchmarks share: per-task configurations, the command line, the
resumable training loop, the sampler training, the baseline samplers and the reports."""
