"""One module per family: its default config, `build(config, data)`, data, evaluators and
predict/sample functions (`jaxdl.recipes.base.Recipe`). A config's `recipe` key names its
family; `get(name)` returns it.
"""

from jaxdl.errors import UserError
from jaxdl.recipes.base import Context, Recipe, Task
from jaxdl.recipes.decoder_lm import DecoderLanguageModel
from jaxdl.recipes.image_classifier import ImageClassifier
from jaxdl.recipes.mlp import TabularMLP
from jaxdl.recipes.rnn_lm import RecurrentLanguageModel
from jaxdl.recipes.seq2seq import DateTranslation
from jaxdl.recipes.text2img import TextToImageDiffusion

RECIPES = {r.name: r for r in (TabularMLP(), ImageClassifier(), RecurrentLanguageModel(),
                               DecoderLanguageModel(), DateTranslation(),
                               TextToImageDiffusion())}

__all__ = ["RECIPES", "Context", "Recipe", "Task", "get"]


def get(name: str) -> Recipe:
    if name not in RECIPES:
        raise UserError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    return RECIPES[name]
