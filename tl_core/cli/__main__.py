"""``python -m tl_core.cli``: the command line, as torchrun starts each process of a run."""

import sys

from tl_core.cli.main import main

sys.exit(main())
