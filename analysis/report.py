"""Tables, the paper's figures and report.html for sweep experiments:

python analysis/report.py ~/archdal_results/focus1-small --out reports/focus1-small
"""

import sys

from archdal.analysis.report import main

if __name__ == "__main__":
    sys.exit(main())
