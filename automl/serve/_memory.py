"""glibc allocator settings for the server: memory comes back to the system after bursts of large
requests (used by the server at start and by the app's periodic trim)."""

from __future__ import annotations

import contextlib


def tune_malloc() -> bool:
    """Make glibc give large buffers back to the system: request bodies and decoded inputs of 256 KiB
    and more are mmapped (freed at once, instead of pinning heap pages after a burst of big requests),
    and at most two malloc arenas serve the worker threads. True when glibc took the settings."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_mmap_threshold, m_arena_max = -3, -8  # from malloc.h
        return bool(libc.mallopt(m_mmap_threshold, 256 * 1024)) and bool(libc.mallopt(m_arena_max, 2))
    except (OSError, AttributeError):  # not glibc (musl …): its allocator already returns memory
        return False


def malloc_trim() -> None:
    """Hand the free pages of every glibc malloc arena back to the system (no-op elsewhere): after a
    burst of large concurrent requests the heap would otherwise stay at its high-water mark."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
