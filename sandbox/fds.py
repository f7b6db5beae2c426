"""File descriptors: a sandbox keeps its channel and its log pipe, nothing else (child half)."""

from __future__ import annotations

import os

from sandbox import _libc

CHANNEL_FD = 3


def keep_only(channel_fd: int, log_fd: int) -> int:
    """stdin from /dev/null, stdout+stderr to the log pipe, the channel at fd 3, close the rest.

    Returns the channel's new fd.
    """
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.dup2(channel_fd, CHANNEL_FD)
    _libc.close_range(CHANNEL_FD + 1)
    os.set_inheritable(CHANNEL_FD, False)
    return CHANNEL_FD
