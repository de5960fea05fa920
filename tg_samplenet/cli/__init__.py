r"""The ``tg-samplenet`` command line (installed as a console script; also
``python -m tg_samplenet.cli``): sample users' point files with a trained sampler, print what
a checkpoint holds, train a progressive sampler on a folder of files.

It sits above every other layer of the package and nothing imports it."""
