"""``python -m sweeper.report SWEEP_DIR --format md|latex|csv|text``: see sweeper.report.paper."""

import sys

from .paper import main

sys.exit(main())
