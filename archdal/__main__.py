"""`python -m archdal` is the `archdal` command."""

import sys

from archdal.cli import main

sys.exit(main())
