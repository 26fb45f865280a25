"""Read exported status histories and validate them against the input contract.

An exported history is a long table, one row per step of one event handler
(see the README, "Input"). :func:`read_histories` reads it
from CSV, Parquet or JSON-lines files, a directory, a glob pattern or a pandas
DataFrame, checks every column once, drops what cannot be used (and counts
it), and returns the canonical history frame that state extraction reads
(described under Returns of :func:`read_histories`).

Everything here is vectorised: files and columns are looped over, rows and
entities never are.
"""

# The public face of the package; the work is done in private modules, each importing only those
# listed before it: ``_sources`` (files, directories, globs, formats, opening), ``_contract``
# (ColumnMap, ReadReport, column resolution, parsing and validation), ``_fast`` (the
# dictionary-encoded reader), ``_read`` (the row-by-row reader, and read_frame/iter_frames: the
# frames with their ``_row`` column, for the model layers) and ``_api`` (the functions below).
from ._api import iter_histories, read_histories
from ._contract import IMPLICIT_EVENT, ColumnMap, ReadReport

__all__ = ["IMPLICIT_EVENT", "ColumnMap", "ReadReport", "iter_histories", "read_histories"]
