"""pgqueue: a teaching kit that builds a job queue inside PostgreSQL, with real workers."""

from pgqueue.errors import PgQueueError

__all__ = ["PgQueueError", "__version__"]
__version__ = "0.1.0"
