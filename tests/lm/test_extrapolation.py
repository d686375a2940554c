"""The length-extrapolation study end to end at its smoke size (RoPE and its scalings)."""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from experiments.positions import run_extrapolation  # noqa: E402


def test_study_smoke_writes_table_and_plot(tmp_path):
    run_extrapolation.main(["--workdir", str(tmp_path / "runs"), "--out", str(tmp_path),
                            "--smoke", "--encodings", "rope"])  # fmt: skip
    table = (tmp_path / "positions_extrapolation.md").read_text()
    for row in ("| rope |", "| rope + yarn |", "| rope + llama3 |", "| rope + ntk |"):
        assert row in table
    assert "| 1L = 16 | 4L = 64 |" in table
    assert (tmp_path / "positions_extrapolation.png").stat().st_size > 1000
    # every cell is a number: the sweep ran at every length
    body = [line for line in table.splitlines() if line.startswith("| rope")]
    assert all("—" not in line for line in body)
