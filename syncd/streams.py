"""Pure helpers over byte streams (iterables of ``bytes``): no I/O, no syncd imports.

A low layer both the pipeline (archives) and the backends (uploads) use, so a
backend never imports from :mod:`syncd.pipeline`.

Contract:

* :func:`skip_bytes` yields the bytes of a stream from an offset on, without
  copying whole chunks that lie after it.
* :func:`exactly` passes a stream through unchanged and raises
  :class:`~syncd.errors.TransientError` as soon as it is longer than the size
  that was announced (``Content-Length``), or at its end when it is shorter:
  a file that changed while being sent is tried again, never stored cut.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from syncd.errors import TransientError


def skip_bytes(chunks: Iterable[bytes], offset: int) -> Iterator[bytes]:
    """The bytes of ``chunks`` from ``offset`` on (the first ``offset`` bytes are dropped)."""
    pos = 0
    for chunk in chunks:
        end = pos + len(chunk)
        if end > offset:
            yield chunk if pos >= offset else bytes(memoryview(chunk)[offset - pos :])
        pos = end


def exactly(chunks: Iterable[bytes], size: int, what: str) -> Iterator[bytes]:
    """``chunks`` unchanged, failing (transient) unless they add up to ``size`` bytes.

    ``what`` names the stream in the error (``the archive``, a file's key).
    """
    sent = 0
    for chunk in chunks:
        sent += len(chunk)
        if sent > size:
            raise TransientError(f"{what} grew beyond {size} bytes while being sent")
        yield chunk
    if sent != size:
        raise TransientError(f"{what} was {sent} bytes, expected {size}")
