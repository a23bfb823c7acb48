"""``python -m sweeper``: run one cell, or a multirun of cells with ``-m``."""

from .engine.app import main

main()
