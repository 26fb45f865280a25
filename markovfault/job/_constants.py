"""The job's fixed names: its exit codes (sysexits) and the entries of the output directory. They live in a
module of their own, importing nothing, because the run, the storage helpers and the command all use them."""

EX_OK, EX_USAGE, EX_DATAERR, EX_NOINPUT, EX_SOFTWARE = 0, 64, 65, 66, 70
EX_CANTCREAT, EX_IOERR, EX_TEMPFAIL, EX_CONFIG = 73, 74, 75, 78

WATERMARK = "watermark.json"
LOCK = ".lock"
RUNS = "runs"
LATEST = "latest"
