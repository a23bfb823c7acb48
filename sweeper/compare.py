"""``python -m sweeper.compare BASE NEW``, the name users type: see sweeper.report.compare."""

import sys

from .report.compare import main

if __name__ == "__main__":
    sys.exit(main())
