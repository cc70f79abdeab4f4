"""``python -m neurolearn ...`` (and ``torchrun ... -m neurolearn train ...``): the command line."""

import sys

from neurolearn.cli import main

sys.exit(main())
