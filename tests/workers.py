"""gunicorn worker classes that gunicorn does not ship, for the sizing tests."""

from gunicorn.workers.base import Worker
from gunicorn.workers.gthread import ThreadWorker


class CustomThreadWorker(ThreadWorker):
    """A project's own subclass of gthread: sized like gthread."""


class ForeignWorker(Worker):
    """A worker that derives from no gunicorn concurrency model: its concurrency is unknown."""
