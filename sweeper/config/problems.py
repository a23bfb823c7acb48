"""The exceptions that mean bad input: the command refuses it before any job runs (exit 2).

Their messages say what was wrong, the value, what is allowed and the fix; ``errors.explain``
prints them. Kept apart from ``job`` so that every config module can raise them.
"""

from __future__ import annotations

__all__ = ["InputError", "UnknownKeyError"]


class InputError(ValueError):
    """A config value that makes no sense for any cell; reported before any job runs."""


class UnknownKeyError(InputError):
    """A key that the node it was given to does not have; printed as ``unknown key ...``."""
