"""Tune lr, weight decay and batch size per dataset × architecture with Optuna (Ray Tune).

    python sweeps/tune_hparams.py --preset small --num-samples 20 --out hparams/small.json
    python sweeps/focus1.py --preset small --hparams hparams/small.json

`--help` lists every option; the logic lives in `archdal.sweep.cli`.
"""

import sys

from archdal.sweep.cli import tune_hparams_main

if __name__ == "__main__":
    sys.exit(tune_hparams_main())
