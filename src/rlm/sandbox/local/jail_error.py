"""The OS jail's one error, raised by `jail`, `landlock` and `seccomp_filter` alike.

A module of its own so the jail's rooms share it without importing each other; loaded by the
worker as a top-level module, beside its siblings (standard library only, as they are).
"""

from __future__ import annotations


class JailError(Exception):
    """The jail could not be built; the message names the missing piece."""
