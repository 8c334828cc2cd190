"""DPO training of agent models on prefkit datasets (TRL ``DPOTrainer`` + LoRA), the study's recipes.

``load_train_recipe(path, overrides)`` reads a recipe (``recipes/train/*.yaml``), ``train(recipe)`` runs it
(``prefkit.train.run``); ``prefkit.train.names`` makes and reads trained models' names. Importing this
package loads no torch: the TRL side (``prefkit.train.dpo``) is imported when training starts.
"""

from prefkit.train.names import ModelName, parse_model_name, run_name, source_nick
from prefkit.train.recipe import LoraSection, TrainRecipe, TrainStage, load_train_recipe
from prefkit.train.run import StageResult, TrainResult, train

__all__ = [
    "LoraSection",
    "ModelName",
    "StageResult",
    "TrainRecipe",
    "TrainResult",
    "TrainStage",
    "load_train_recipe",
    "parse_model_name",
    "run_name",
    "source_nick",
    "train",
]
