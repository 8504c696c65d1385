"""`slimkit run RECIPE.yaml`: a validated chain of compression steps, measured after each."""

from __future__ import annotations

import argparse

from slimkit.cli._common import HelpFormatter, check_in, check_out


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "run", help="run a YAML recipe (prune, quantize, share, lowrank, finetune steps)",
        formatter_class=HelpFormatter,
        description="Validate a recipe completely, then apply its steps in order and report "
        "the six ratios after each step.")
    p.add_argument("recipe", help="recipe file (.yaml)")
    p.add_argument("--out", default="slimkit-run", help="folder for the report and resolved recipe")
    p.add_argument("--check", action="store_true", help="only validate the recipe")


def run(args: argparse.Namespace) -> int:
    from slimkit.recipes import load_recipe, run_recipe

    check_in(args.recipe, "recipe")
    if not args.check:
        check_out(args.out, "--out", inputs=(args.recipe,), folder=True)
    recipe = load_recipe(args.recipe)
    if args.check:
        print(f"{args.recipe}: valid ({len(recipe.steps)} steps: "
              f"{', '.join(name for name, _ in recipe.steps)})")
        return 0
    run_recipe(recipe, args.out)
    return 0
