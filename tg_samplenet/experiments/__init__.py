r"""What the examples and benchmarks share, above the library: one typed configuration per
task with its profiles and loss weights (:mod:`~tg_samplenet.experiments.config`), the
command line (:mod:`~tg_samplenet.experiments.command_line`), the samplers every example
trains and evaluates (:mod:`~tg_samplenet.experiments.samplers`), the baseline samplers
(:mod:`~tg_samplenet.experiments.baselines`), results and tables
(:mod:`~tg_samplenet.experiments.reporting`), plots (:mod:`~tg_samplenet.experiments.plots`),
the run environment (:mod:`~tg_samplenet.experiments.environment`) and benchmark helpers
(:mod:`~tg_samplenet.experiments.benchmarking`)."""
