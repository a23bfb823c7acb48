"""Measuring: timing loop and statistics, peak memory, GPU memory through NVML, the environment.

Used by the worker (and the statistics by the reports). Imports no framework.
"""
