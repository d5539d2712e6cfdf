"""Fixed-width JSON numbers for point clouds, formatted a block at a time with numpy.

Why not ``json.dumps``: the dataset is created with the archive's exact size,
and a resumed upload must re-create the same bytes, so every number has the
same width: ``%14.7e`` (a space or ``-``, one digit, ``.``, seven digits,
``e±dd``), eight significant digits, more than a float32 coordinate holds.
The leading space is JSON whitespace, so the text stays valid JSON. Python's
``%`` formatting costs about a microsecond per number; this vectorised form
costs a few tens of nanoseconds, which matters for clouds of millions of points.

Contract: :func:`format_sci` takes finite values with ``|v| < 1e99``; values
with ``|v| < 1e-99`` are written as zero. The same input gives the same bytes.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

WIDTH = 14
LIMIT = 1e99  # two exponent digits; the caller drops larger values
_DIGITS = 7


def format_sci(values: npt.NDArray[np.float64]) -> npt.NDArray[np.uint8]:
    """``(n,)`` floats → ``(n, 14)`` ASCII bytes of ``%14.7e`` (see module docstring)."""
    v = np.asarray(values, dtype=np.float64)
    a = np.abs(v)
    zero = a < 1e-99
    safe = np.where(zero, 1.0, a)
    exp = np.floor(np.log10(safe)).astype(np.int64)
    mant = np.rint(safe / np.power(10.0, exp) * 10**_DIGITS).astype(np.int64)
    # log10 may land one off near powers of ten: renormalise to 1e7 <= mant < 1e8.
    low = mant < 10**_DIGITS
    exp = np.where(low, exp - 1, exp)
    mant = np.where(low, np.rint(safe / np.power(10.0, exp) * 10**_DIGITS).astype(np.int64), mant)
    high = mant >= 10 ** (_DIGITS + 1)
    exp = np.where(high, exp + 1, exp)
    mant = np.where(high, np.rint(safe / np.power(10.0, exp) * 10**_DIGITS).astype(np.int64), mant)
    mant = np.where(zero, 0, mant)
    exp = np.where(zero, 0, exp)
    out = np.empty((len(v), WIDTH), dtype=np.uint8)
    out[:, 0] = np.where((v < 0) & ~zero, ord("-"), ord(" "))
    out[:, 1] = 48 + mant // 10**_DIGITS
    out[:, 2] = ord(".")
    for j in range(_DIGITS):
        out[:, 3 + j] = 48 + (mant // 10 ** (_DIGITS - 1 - j)) % 10
    out[:, 10] = ord("e")
    out[:, 11] = np.where(exp < 0, ord("-"), ord("+"))
    e = np.abs(exp)
    out[:, 12] = 48 + e // 10
    out[:, 13] = 48 + e % 10
    return out
