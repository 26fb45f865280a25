"""Regenerate the bundled sample ``data/orders_sample.csv.gz``.

Run from anywhere::

    python data/make_sample.py

The output is byte-identical on every run: the seed is fixed, the metrics
are rounded, and the gzip header carries no file name, mtime 0 and OS byte
255 ("unknown"). (The compressed bytes also depend on the zlib build; the
CSV inside does not.)
"""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

try:
    from markovfault.simulate import simulate_histories
except ImportError:  # running from a source checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from markovfault.simulate import simulate_histories

SEED = 20260101
N_HANDLERS = 40
N_STEPS = 1500
FILENAME = "orders_sample.csv.gz"


def sample_csv() -> bytes:
    """The sample as uncompressed CSV bytes (UTF-8, ``\\n`` line ends)."""
    frame = simulate_histories(
        n_handlers=N_HANDLERS,
        n_steps=N_STEPS,
        flaky_fraction=0.2,
        start="2026-01-01",
        step_interval="1min",
        random_state=SEED,
    )
    frame["latency_ms"] = frame["latency_ms"].round(1)
    frame["error_rate"] = frame["error_rate"].round(3)
    return frame.to_csv(index=False, lineterminator="\n").encode("utf-8")


def write_sample(path: str | Path) -> Path:
    """Write the gzip-compressed sample to ``path`` and return the path."""
    path = Path(path)
    data = bytearray(gzip.compress(sample_csv(), compresslevel=9, mtime=0))
    data[9] = 255  # header OS byte: "unknown", whatever platform wrote it
    path.write_bytes(bytes(data))
    return path


def main() -> None:
    out = write_sample(Path(__file__).resolve().parent / FILENAME)
    print(f"wrote {out} ({out.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
