"""Cached and resumed runs (``cache=True``): stage keys, the store on disk, what a run reuses.

:mod:`~discodsl.caching.keys` says what makes two runs the same (each stage's
key), :mod:`~discodsl.caching.store` where kept stages live and how they are
evicted, :mod:`~discodsl.caching.reuse` what a run finds to reuse and how it
keeps its own stages. The runner template (:mod:`discodsl.runners.base`)
uses them; the worker never does.
"""
