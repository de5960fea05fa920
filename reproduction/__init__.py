r"""The paper's reproduction: what ``examples/`` and ``benchmarks/`` share, beside the library
(it imports :mod:`tg_samplenet`, which never imports it) and not installed. The scripts put
the repository root on :obj:`sys.path`; the tests import it from there.

Running an example:

- :mod:`~reproduction.config`: the profiles (each example's named run configurations,
  :obj:`--profile`) and the authors' loss weights per task.
- :mod:`~reproduction.command_line`: the flags every example shares, the start of a run and
  its data splits.
- :mod:`~reproduction.progress`: numbered stage lines and progress bars with time left.

Data:

- :mod:`~reproduction.shapes`: the built-in procedural shapes, the default data set.
- :mod:`~reproduction.datasets`: every data set by name (:func:`get_dataset`).

Networks and samplers:

- :mod:`~reproduction.tasks`: the paper's task networks, losses and metrics (PointNet,
  PCRNet, the autoencoder, PointNet++ with learned sampling).
- :mod:`~reproduction.classifiers`: the classification example's PointNets, trained on
  complete clouds.
- :mod:`~reproduction.samplers`: SampleNet, S-NET and SampleNet-Progressive built and
  trained as a profile says, and evaluated.
- :mod:`~reproduction.baselines`: farthest point, random and voxel-grid sampling.
- :mod:`~reproduction.pointnet2`: PointNet++ trained jointly with its samplers, timed, and
  the drop-in of a learned sampler for its fps.

Results:

- :mod:`~reproduction.reporting`: :obj:`results.json`, JSON, Markdown tables and number
  formats.
- :mod:`~reproduction.plots`: the metric against the sampling ratio, sampled clouds,
  training curves, log-log timings.
- :mod:`~reproduction.environment`: the machine, versions and command of a run.
- :mod:`~reproduction.ordering`: how two data sets order the samplers.

Benchmarks and tests:

- :mod:`~reproduction.benchmarking`: timing with :mod:`torch.utils.benchmark`, peak
  memory, log-log slopes.
- :mod:`~reproduction.peers`: the farthest point samplers a user can install instead.
- :mod:`~reproduction.testing`: brute-force references and the inputs tests and benchmarks
  share.
"""
