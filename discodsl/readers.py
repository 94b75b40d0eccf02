"""The built-in readers, ``from discodsl import readers`` or ``import discodsl.readers``.

``@map(reader=readers.json_lines())`` reads each input of a job through a
reader rather than as text lines. The readers run on the nodes, so they live
in :mod:`discodsl.worker.readers`, which ships in every jobpack (read its
docstring for what a reader of your own must do); this module names them
where a user looks for them.
"""

from __future__ import annotations

from discodsl.worker.readers import Reader, csv_rows, fixed, json_lines, whole_file

__all__ = ["Reader", "csv_rows", "fixed", "json_lines", "whole_file"]
