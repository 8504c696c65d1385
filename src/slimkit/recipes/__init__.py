"""YAML recipes: a model, its data and a chain of compression steps, validated before running.

>>> recipe = load_recipe("recipes/lenet5-prune-quantize.yaml")   # doctest: +SKIP
>>> report = run_recipe(recipe, out="runs/lenet5")                # doctest: +SKIP
"""

from slimkit.recipes.runner import run_recipe
from slimkit.recipes.schema import Recipe, load_recipe, parse_recipe
from slimkit.recipes.steps import STEPS

__all__ = ["STEPS", "Recipe", "load_recipe", "parse_recipe", "run_recipe"]
