"""Running cells: the Hydra entry and job runner (Hydra process), the zygote (imports one
framework, then only forks) and the worker (measures one mode of one cell in a fresh process).

Only the zygote and the worker import a framework, and only through ``sweeper.frameworks.load``.
"""
