"""Explain a config error in one message: what was wrong, the value, what is allowed, the fix.

Hydra's own messages name the problem but sometimes suggest the wrong fix (``+key=value`` for a
misspelt key, which a closed schema then refuses). :func:`explain` rewrites the common cases and
passes the rest through; it returns None for exceptions that are bugs, not bad input.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from typing import Optional

from hydra.errors import HydraException, MissingConfigException
from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    OmegaConfBaseException,
    ValidationError,
)

from .problems import InputError, UnknownKeyError

__all__ = ["explain"]

_TYPE_HINTS = {
    "Integer": "an integer",
    "Float": "a number",
    "Boolean": "true or false",
}


def _unknown_key(exc: HydraException, cause: OmegaConfBaseException) -> str:
    override = re.search(r"override '([^']+)'", str(exc))
    full_key = getattr(cause, "full_key", None) or (override.group(1) if override else "?")
    parent, _, key = full_key.rpartition(".")
    schema = getattr(cause, "object_type", None)
    known = [f.name for f in dataclasses.fields(schema)] if dataclasses.is_dataclass(schema) else []
    close = difflib.get_close_matches(key, known, n=1)
    where = parent or "the primary config"
    lines = [f"unknown key {full_key}: {where} has no key '{key}'."]
    if close:
        lines.append(f"Did you mean {parent + '.' if parent else ''}{close[0]}?")
    if known:
        lines.append(f"Keys of {where} ({schema.__name__}): {', '.join(known)}.")
    lines.append("Fix the spelling on the command line or in your sweep YAML.")
    return "\n".join(lines)


def _bad_type(exc: HydraException, cause: ValidationError) -> str:
    override = re.search(r"override (\S+)", str(exc))
    full_key = getattr(cause, "full_key", "?")
    first_line = str(cause).splitlines()[0]
    given = override.group(1) if override else full_key
    choices = re.search(r"expected one of \[([^\]]*)\]", first_line)
    if choices:  # an Enum: name its values
        allowed = [c.strip() for c in choices.group(1).split(",")]
        what, example, sweep = f"one of {', '.join(allowed)}", allowed[0], ",".join(allowed)
    elif "is not a valid bool" in first_line:
        what, example, sweep = _TYPE_HINTS["Boolean"], "true", "false,true"
    else:
        wanted = re.search(r"converted to (\w+)", first_line)
        what = _TYPE_HINTS.get(wanted.group(1), wanted.group(1)) if wanted else "another value"
        example, sweep = {"an integer": ("8", "1,8"), "a number": ("0.5", "0.5,2")}.get(
            what, ("...", "A,B")
        )
    return (
        f"bad value {given}: {full_key} takes {what} ({first_line}). "
        f"Give {full_key} {what}, e.g. {full_key}={example}; a sweep lists values with commas: "
        f"{full_key}={sweep}."
    )


def explain(exc: BaseException) -> Optional[str]:
    """A user-facing message for a bad-input exception, or None if ``exc`` is not one."""
    if isinstance(exc, UnknownKeyError):
        return f"sweeper: {exc}"
    if isinstance(exc, InputError):
        return f"sweeper: bad input: {exc}"
    cause = exc.__cause__
    if isinstance(exc, MissingConfigException):
        text = str(exc).split("\nConfig search path:")[0].rstrip()
        group = re.search(r"Could not find '([^/']+)/([^']+)'", text)
        fix = ""
        if group:
            fix = f"\nChoose one of these with {group.group(1)}=NAME"
            if group.group(1) in ("model", "sweep"):
                fix += (
                    f", or add {group.group(1)}/{group.group(2)}.yaml to conf/ or to a folder "
                    "passed with --config-dir"
                )
            fix += "."
        plugin = re.search(r"'hydra/launcher/(ray|submitit)", text)
        if plugin:  # a preset of ours extends a launcher plugin's config
            extra = "ray" if plugin.group(1) == "ray" else "slurm"
            fix += f"\nThat launcher is a Hydra plugin: pip install 'sweeper[{extra}]'."
        return f"sweeper: {text}{fix}"
    if isinstance(exc, HydraException):
        if isinstance(cause, (ConfigKeyError, ConfigAttributeError)):
            return "sweeper: " + _unknown_key(exc, cause)
        if isinstance(cause, ValidationError):
            return "sweeper: " + _bad_type(exc, cause)
        detail = f"\n{cause}" if isinstance(cause, OmegaConfBaseException) else ""
        return f"sweeper: {exc}{detail}"
    if isinstance(exc, OmegaConfBaseException):
        return f"sweeper: {exc}"
    return None
