r"""``python -m tg_samplenet.cli``: the ``tg-samplenet`` command line."""

import sys

from tg_samplenet.cli.main import main

sys.exit(main())
