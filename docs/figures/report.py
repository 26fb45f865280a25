"""Draw docs/figures/report.png, the README's screenshot of `markovfault report`.

The bundled sample (data/orders_sample.csv.gz with data/orders.toml and a [job] table) run through the scheduled
job at six as-ofs four hours apart, a backtest of the same sample, the report of the job's output directory with
that backtest, and headless Chromium's screenshot of it. Run ``python docs/figures/report.py`` from the
repository's root (needs chromium on PATH).
"""

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

root = Path(__file__).resolve().parents[2]
JOB = """
[job]
input = "in"
output = "out"
horizons = [1, 5, 10]
threshold = 0.6
"""


def run(*argv):
    subprocess.run([sys.executable, "-m", "markovfault.cli", *map(str, argv)], check=True, cwd=root,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


with tempfile.TemporaryDirectory() as tmp:
    tmp = Path(tmp)
    (tmp / "in").mkdir()
    sample = tmp / "in" / "orders_sample.csv.gz"
    shutil.copy2(root / "data" / "orders_sample.csv.gz", sample)
    config = (root / "data" / "orders.toml").read_text().replace(
        'kind = "categorical"', 'kind = "categorical"\nstates = ["ok", "slow", "error", "timeout", "down"]', 1)
    (tmp / "job.toml").write_text(config + JOB)
    for as_of in ("2026-01-01T04:00Z", "2026-01-01T08:00Z", "2026-01-01T12:00Z", "2026-01-01T16:00Z",
                  "2026-01-01T20:00Z", "2026-01-02T00:00Z"):
        run("forecast", "--config", tmp / "job.toml", "--as-of", as_of)
    run("backtest", sample, "--config", root / "data" / "orders.toml", "--cutoffs", "3",
        "--baselines", "climatology,state_frequency", "--no-progress", "--out", tmp / "backtest")
    page = tmp / "report.html"
    run("report", "--config", tmp / "job.toml", "--backtest", tmp / "backtest", "--out", page, "--top", "12")
    png = Path(__file__).with_suffix(".png")
    subprocess.run([shutil.which("chromium"), "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--hide-scrollbars", f"--screenshot={png}", "--window-size=1280,1600", page.as_uri()],
                   check=True, capture_output=True)
    print(f"wrote {png}")
