"""From records to what people read: the collector, the old tool's tables and CSV files.

Runs in the Hydra process at the end of a sweep, or on its own (``python -m sweeper.collect``).
Imports no framework.
"""
