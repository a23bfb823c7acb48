"""``python -m sweeper.plot SWEEP_DIR``, the name users type: see sweeper.report.plot."""

import sys

from .report.plot import main

if __name__ == "__main__":
    sys.exit(main())
