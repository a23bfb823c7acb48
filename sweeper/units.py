"""Units used across the package: one definition each."""

MIB = 1 << 20  # bytes in a MiB; tables say "MB" for MiB, as the old tool did
