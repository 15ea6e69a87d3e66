"""Focus 1 sweep: every trajectory of the grid as one Ray Tune trial.

    python sweeps/focus1.py --preset small                    # a local Ray on this machine
    python sweeps/focus1.py --preset paper --address auto --gpus-per-trial 0.25
    python sweeps/focus1.py --preset small --resume           # finish an interrupted sweep

`--help` lists every option; the logic lives in `archdal.sweep.cli`.
"""

import sys

from archdal.sweep.cli import focus1_main

if __name__ == "__main__":
    sys.exit(focus1_main())
