"""``python -m sweeper.collect SWEEP_DIR``, the name users type: see sweeper.report.collect."""

import sys

from .report.collect import main

if __name__ == "__main__":
    sys.exit(main())
