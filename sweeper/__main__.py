"""``python -m sweeper``: run one cell, or a multirun of cells with ``-m``."""

from .run.app import main

main()
