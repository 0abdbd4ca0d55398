"""sweep/cli.py: `tune-distill sweep` (and `python -m tune_distill.sweep`) options and exit statuses."""

from __future__ import annotations

import subprocess
import sys


def test_command_line_errors_exit_with_2(tmp_path, capsys):
    from tune_distill.cli import main as cli_main

    def main(argv):
        return cli_main(["sweep", *argv])

    assert main(["--preset", "nope", "--out", str(tmp_path / "a")]) == 2
    assert "no configs/sweep_nope.yaml" in capsys.readouterr().err
    assert main(["--resume", "--out", str(tmp_path / "b")]) == 2
    assert "holds no sweep" in capsys.readouterr().err
    assert main(["--out", str(tmp_path / "c")]) == 2
    assert "give --preset NAME or --config FILE" in capsys.readouterr().err


def test_python_m_tune_distill_sweep_is_the_sweep_subcommand(tmp_path):
    result = subprocess.run([sys.executable, "-m", "tune_distill.sweep", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "usage: tune-distill sweep" in result.stdout
    assert "--resume" in result.stdout and "--storage-path" in result.stdout
    result = subprocess.run([sys.executable, "-m", "tune_distill.sweep", "--preset", "nope", "--out", str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "no configs/sweep_nope.yaml" in result.stderr
