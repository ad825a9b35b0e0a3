"""prometheus_client's multiprocess files of workers that are gone: gauges dropped, the rest kept in one file.

In multiprocess mode every worker writes its own files (``counter_<pid>.db``,
``histogram_<pid>.db``...). prometheus_client's ``mark_process_dead`` removes a dead worker's
live gauges, but its counters and histograms stay, one set of files per worker that ever
ran: with ``max_requests`` recycling workers, the directory and every scrape grow without
bound. :func:`retire_worker` (run by the ``child_exit`` hook, in the master) adds a dead
worker's counter, histogram and summary values into one archive file per kind, which the
collector reads like any other, then removes the worker's files: the sums stay the same and
the files stay as many as the live workers. :class:`Collector` reads the directory as
prometheus_client's does, and reads it again should a file vanish mid-read (the moment a
worker is retired), so a scrape never fails for it.

This module imports no HTTP library: it runs in the gunicorn master.
"""

from __future__ import annotations

import os
from typing import Any, Final

ARCHIVE: Final = "archive"
"""Where a file name has the worker's process id, the archive has this."""

ADDED_KINDS: Final = ("counter", "histogram", "summary")
"""The kinds whose values from several processes are added up (kept after a worker dies)."""

READ_TRIES: Final = 3


def retire_worker(pid: int, directory: str) -> None:
    """Drop a dead worker's live gauges and move its added-up values into the archive files."""
    from prometheus_client import multiprocess  # noqa: PLC0415  (optional, master only)
    from prometheus_client.mmap_dict import MmapedDict  # noqa: PLC0415

    multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]
    for kind in ADDED_KINDS:
        dead = os.path.join(directory, f"{kind}_{pid}.db")
        if not os.path.exists(dead):
            continue
        values = list(MmapedDict.read_all_values_from_file(dead))  # type: ignore[no-untyped-call]
        archive = MmapedDict(os.path.join(directory, f"{kind}_{ARCHIVE}.db"))  # type: ignore[no-untyped-call]
        try:
            for key, value, timestamp, _ in values:
                kept, _ = archive.read_value(key)  # type: ignore[no-untyped-call]
                archive.write_value(key, kept + value, timestamp)  # type: ignore[no-untyped-call]
        finally:
            archive.close()  # type: ignore[no-untyped-call]
        os.unlink(dead)


def collector(registry: Any, path: str | None = None) -> Any:
    """prometheus_client's multiprocess collector over ``path`` (default:
    ``PROMETHEUS_MULTIPROC_DIR``), registered with ``registry``, that reads again when a file
    vanishes under it."""
    from prometheus_client import multiprocess  # noqa: PLC0415

    class Collector(multiprocess.MultiProcessCollector):
        def collect(self) -> Any:
            for tried in range(1, READ_TRIES + 1):
                try:
                    return list(super().collect())  # type: ignore[no-untyped-call]
                except FileNotFoundError:  # a worker's files retired meanwhile: read again
                    if tried == READ_TRIES:
                        raise
            raise AssertionError("unreachable")  # pragma: no cover

    return Collector(registry, path)  # type: ignore[no-untyped-call]
