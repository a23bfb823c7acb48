"""From records to what people read and decide on. Imports no framework.

- ``select``: which records of a sweep folder are its latest run's (``sweep.json``), which are
  left out and why, which cells have no record yet;
- ``variation``: what else varies across the cells, so no two rows look alike;
- ``collect`` and ``tables``: the old tool's tables and CSV files (``python -m sweeper.collect``,
  also at the end of every run), with the scaling fits under them;
- ``frame``: the records as a pandas DataFrame (``sweeper.load``), ``summary.csv``;
- ``scaling``: how time and memory grow with sequence length;
- ``compare``: two sweeps cell by cell with significance and CI gates (``python -m
  sweeper.compare``);
- ``paper`` and ``render``: tables for a paper or a pull request in text, Markdown, LaTeX or CSV
  (``python -m sweeper.report``);
- ``plot``: figures (``python -m sweeper.plot``); matplotlib is imported only there;
- ``progress``: the line printed for each finished cell while a sweep runs.
"""
