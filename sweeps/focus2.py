"""Focus 2 sweep: architecture optimization inside active learning.

    python sweeps/focus2.py --preset small                    # a local Ray on this machine
    python sweeps/focus2.py --preset paper --address auto --gpus-per-trial 0.5
    python sweeps/focus2.py --preset small --resume           # finish an interrupted sweep

Stage one runs the pre-optimizations (spo, upo) as Tune trials; stage two runs one trial
per trajectory, loading them. `--help` lists every option; the logic is in
`archdal.sweep.cli`.
"""

import sys

from archdal.sweep.cli import focus2_main

if __name__ == "__main__":
    sys.exit(focus2_main())
