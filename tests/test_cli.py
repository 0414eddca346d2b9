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


def test_an_unknown_option_points_to_the_sub_command_s_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["sweep", "RUN", "--n-imgs", "4"])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and err.count("\n") == 0
    assert "unrecognized arguments: --n-imgs" in err and "see `freqlab sweep --help`" in err


@pytest.mark.parametrize("command", ["spectra", "pretrain", "sweep", "finetune", "compare", "figures", "demo",
                                     "layers", "weights"])
def test_every_command_s_help_is_plain_text_with_quiet_and_json(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = capsys.readouterr().out
    assert "``" not in text and "--quiet" in text and "--json" in text
    if command != "figures":  # figures only redraws saved results: no device, no randomness
        assert "--device" in text and "--seed" in text
    if command == "pretrain":  # the actual values, preset by preset, not "the preset's value"
        assert "cpu-small 800; cifar 400000; tiny 12" in " ".join(text.split())


def test_json_summaries_are_one_document(tmp_path, make_tiny_run, capsys):
    import json

    run = make_tiny_run([(0, 1), (12, 2)])
    assert main(["sweep", str(run), "--n-images", "4", "--sigmas", "0.1,20", "--data", "white", "--modes",
                 "generate", "--quiet", "--json", "--out", str(tmp_path / "s.nc")]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["command"] == "sweep" and [c["name"] for c in doc["checkpoints"]] == ["step-000000", "step-000012"]
    assert set(doc["checkpoints"][0]["modes"]["generate"]["lsd_db"]) == {"low", "mid", "high"}
    assert main(["figures", str(tmp_path), "--json", "--quiet", "--out", str(tmp_path / "f")]) == 2  # no results
