"""slimkit.survey: the survey's comparison tables (section 3.3-3.4), reproduced by one command.

`run_survey(budget, out)` computes Table 6 (AlexNet: pruning vs SVD), Table 7 (VGG-16: Deep
Compression vs CP), Deep Compression on the LeNets, section 3.4 (four families, six ratios,
composite), Table 8 (best method per device) and a Hinton-style distillation table, each
cell cached under ``OUT/cache`` by the sha256 of its config, then writes ``OUT/survey.md``
and a self-contained ``OUT/survey.html``. Budgets: smoke (seconds), quick, full.

    slimkit survey --budget quick --out runs/survey --data-root ../shared/datasets
"""

from slimkit.survey.cells import CellCache, canonical_json, cell_key

__all__ = ["BUDGETS", "CellCache", "canonical_json", "cell_key", "run_survey"]


def __getattr__(name: str):
    if name == "run_survey":
        from slimkit.survey.report import run_survey

        return run_survey
    if name == "BUDGETS":
        from slimkit.survey.setup import BUDGETS

        return BUDGETS
    raise AttributeError(name)
