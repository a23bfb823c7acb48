"""``python -m sweeper``: run one cell, or a multirun of cells with ``-m``."""

from .app import main

main()
