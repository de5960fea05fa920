r"""What the examples and benchmarks share, above the library: one typed configuration per
task with its profiles and loss weights (:mod:`~reproduction.config`), the
command line (:mod:`~reproduction.command_line`), the samplers every example
trains and evaluates (:mod:`~reproduction.samplers`), the baseline samplers
(:mod:`~reproduction.baselines`), results and tables
(:mod:`~reproduction.reporting`), plots (:mod:`~reproduction.plots`),
the run environment (:mod:`~reproduction.environment`) and benchmark helpers
(:mod:`~reproduction.benchmarking`)."""
