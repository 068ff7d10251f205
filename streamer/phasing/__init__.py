"""Phase retrieval: composable operators, a recipe grammar and a batched engine over ``xp``."""

from streamer.phasing.engine import PhasingConfig, PhasingResult, reconstruct
from streamer.phasing.operators import ER, HIO, RAAR, PhaseConstraint, ShrinkWrap
from streamer.phasing.recipe import DEFAULT_RECIPE, RecipeError, parse_recipe

__all__ = [
    "DEFAULT_RECIPE", "ER", "HIO", "RAAR", "PhaseConstraint", "PhasingConfig", "PhasingResult", "RecipeError",
    "ShrinkWrap", "parse_recipe", "reconstruct",
]
