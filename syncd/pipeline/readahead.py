"""Read ahead: produce an upload's next chunks while the current one is being sent.

An archive upload reads each file, computes its CRC-32 and sends it; done in
one thread, the disk and the CRC wait for the socket and the socket waits for
them. :func:`read_ahead` runs the producing iterator in a thread of its own,
at most ``depth`` chunks ahead (memory stays bounded: ``depth`` chunks), so
reading and sending overlap (file reads, ``zlib.crc32`` and socket writes all
release the GIL).

Contract: the chunks come out in order and unchanged; an exception raised by
the producer is raised in the consumer where that chunk would have come;
when the consumer stops early (an error while sending, ``close()``), the
producer is stopped and its thread joined before ``read_ahead`` returns.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterable
from typing import TypeVar, cast

T = TypeVar("T")

_DONE = object()
_POLL_SECONDS = 0.1  # how often a producer blocked on a full queue checks for stop


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def read_ahead(items: Iterable[T], depth: int = 4) -> Generator[T, None, None]:
    """The items of ``items``, produced in a thread up to ``depth`` ahead (see module doc)."""
    if depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")
    it = iter(items)
    q: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(value: object) -> bool:
        while not stop.is_set():
            try:
                q.put(value, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in it:
                if not put(item):
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            put(_Failed(exc))
            return
        put(_DONE)

    thread = threading.Thread(target=produce, name="syncd-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            value = q.get()
            if value is _DONE:
                return
            if isinstance(value, _Failed):
                raise value.exc
            yield cast(T, value)
    finally:
        stop.set()
        thread.join()
        close = getattr(it, "close", None)
        if callable(close):
            close()  # a generator producer: its own finally blocks run (files closed)
