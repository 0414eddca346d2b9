"""The top-level command line: --version, and --debug before or after the sub-command."""

import pytest

from freqlab import __version__
from freqlab.cli import main


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"freqlab {__version__}"


@pytest.mark.parametrize("argv", [["--debug", "figures", "MISSING"], ["figures", "MISSING", "--debug"]])
def test_debug_shows_the_traceback_wherever_it_is_given(argv, tmp_path):
    argv = [str(tmp_path / a) if a == "MISSING" else a for a in argv]
    with pytest.raises(FileNotFoundError):
        main(argv)


def test_without_debug_an_error_is_one_line(tmp_path, capsys):
    assert main(["figures", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not exist" in err[0]
