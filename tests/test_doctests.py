"""The docstring examples of every slimkit module run as doctests (examples that need data,
files or long training are marked `# doctest: +SKIP`), so `python -m pytest -q` checks them."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import warnings

import pytest

import slimkit

FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(slimkit.__path__, "slimkit.")
                  if not m.name.endswith("__main__"))


def _examples(name: str) -> list[doctest.DocTest]:
    mod = importlib.import_module(name)
    return [t for t in doctest.DocTestFinder(exclude_empty=True).find(mod, name) if t.examples]


WITH_EXAMPLES = [n for n in ["slimkit", *_modules()] if _examples(n)]


def test_examples_are_found():
    assert len(WITH_EXAMPLES) > 50 and "slimkit.selection" in WITH_EXAMPLES


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_docstring_examples(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)                 # examples that write files write here
    tests = _examples(name)
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    report: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for t in tests:
            runner.run(t, out=report.append)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, "".join(report)


def test_a_wrong_example_fails():
    parser = doctest.DocTestParser()
    t = parser.get_doctest(">>> 1 + 1\n3\n", {}, "wrong", None, 0)
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    runner.run(t, out=lambda s: None)
    assert runner.summarize(verbose=False).failed == 1
