"""The stages of syncd, one module each, each with ``run_once()``.

``watch`` (detect and settle) → ``pack`` (freeze file lists) → ``upload``
(upload, submit, follow processing); ``pull`` mirrors the platform;
``schedule`` decides when pulls run. The daemon, ``syncd once``, the tests
and the benchmarks all drive these same functions.
"""
