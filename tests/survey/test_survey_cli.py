"""`slimkit survey`: light import, clear errors for bad arguments."""

import argparse
import subprocess
import sys

import pytest

from slimkit.cli import survey
from slimkit.errors import UserError


def parse(*argv):
    parser = argparse.ArgumentParser(prog="slimkit")
    sub = parser.add_subparsers(dest="command")
    survey.add_parser(sub)
    return parser.parse_args(["survey", *argv])


def test_import_does_not_load_torch():
    code = "import sys, slimkit.cli.survey; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_defaults_and_budgets():
    args = parse("--out", "x")
    assert (args.budget, args.out, args.data_root) == ("quick", "x", None)
    assert not args.train_missing and parse("--out", "x", "--train-missing").train_missing
    assert "--train-missing" in survey._argv(parse("--out", "x", "--train-missing"))
    from slimkit.survey.setup import BUDGETS

    assert tuple(BUDGETS) == survey.BUDGETS
    with pytest.raises(SystemExit):
        parse("--out", "x", "--budget", "huge")
    with pytest.raises(SystemExit):
        parse()                                   # --out is required


def test_out_that_is_a_file_is_refused(tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("keep me")
    with pytest.raises(UserError, match="--out"):
        survey.run(parse("--budget", "smoke", "--out", str(f)))
    assert f.read_text() == "keep me"


def test_missing_data_root_and_checkpoints_are_refused(tmp_path):
    with pytest.raises(UserError, match="--data-root"):
        survey.run(parse("--budget", "smoke", "--out", str(tmp_path / "o"),
                         "--data-root", str(tmp_path / "nowhere")))
    with pytest.raises(UserError, match="--checkpoints"):
        survey.run(parse("--budget", "smoke", "--out", str(tmp_path / "o"),
                         "--checkpoints", str(tmp_path / "nowhere")))
    assert not (tmp_path / "o").exists()          # refused before anything is written


def test_tables_flag_parses_and_refuses_unknown_names():
    from slimkit.survey.report import TABLES

    assert survey.TABLES == TABLES
    assert parse("--out", "x", "--tables", "distillation, table8").tables == ("distillation",
                                                                            "table8")
    for bad in ("table9", ",", "distillation,nope"):
        with pytest.raises(SystemExit):
            parse("--out", "x", "--tables", bad)


def test_only_the_chosen_tables_are_computed(tmp_path):
    from slimkit.survey.report import run_survey

    result = run_survey("smoke", tmp_path, tables=("distillation",), log=lambda m: None)
    assert [t.key for t in result["tables"]] == ["distillation"]
    md = (tmp_path / "survey.md").read_text()
    assert "Distillation in Hinton's setting" in md and "Table 6" not in md
    assert "Left out of this run (--tables): table6, table7, deep_compression" in md
    with pytest.raises(UserError, match="table9"):
        run_survey("smoke", tmp_path, tables=("table9",), log=lambda m: None)
