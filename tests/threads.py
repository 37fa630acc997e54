"""Run callables in threads that start together, as concurrent requests would."""

import threading
from collections.abc import Callable, Iterable

from django.db import connection


def run_together(target: Callable, args: Iterable) -> list[Exception]:
    """``target(arg)`` for each arg, each in its own thread, all released at once by a barrier;
    each thread closes its database connection. Returns the exceptions raised."""
    args = list(args)
    errors: list[Exception] = []
    barrier = threading.Barrier(len(args))

    def run(arg):
        try:
            barrier.wait()
            target(arg)
        except Exception as exc:  # reported to the caller
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(arg,)) for arg in args]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors
