"""The one table of options: its page is current, its rules refuse bad values by key, and
model knobs reach every module that has the field."""

import pytest

from jaxdl import options, recipes, rules
from jaxdl.errors import UserError
from jaxdl.recipes import options_page
from jaxdl.recipes.base import configure_model


def test_the_options_page_is_generated_from_the_table():
    assert options_page.PAGE.read_text() == options_page.page(), (
        "docs/options.md is stale: run python -m jaxdl.recipes.options_page")


def _bad(rule, default):
    """A value of the default's type that the rule refuses."""
    if isinstance(rule, rules.Check):
        return "5:3"
    edge = rule.low - 1 if rule.low is not None else rule.high + 1
    if isinstance(rule, rules.MeshSize):
        edge = 0
    one = type(default[0] if rule.sequence else default)(edge)
    return (one,) if rule.sequence else one


@pytest.mark.parametrize("name", list(recipes.RECIPES))
def test_every_ruled_key_takes_its_example_and_refuses_a_bad_value_by_name(name):
    recipe = recipes.get(name)
    checked = 0
    for key, option in recipe.table.items():
        rule = option.rule
        if rule is None or isinstance(rule, rules.Choice):
            continue
        config = recipe.get_config()
        if rule.example is not None:
            options._set(config, key, rule.example)
            recipe.validate(config)  # the example in the error message is itself allowed
        options._set(config, key, _bad(rule, option.default))
        with pytest.raises(UserError, match=f"config key '{key}' is "):
            recipe.validate(config)
        checked += 1
    assert checked >= 8  # seed, devices, mesh.*, grad_accum_steps, ... at least


def test_an_older_config_gets_the_shared_defaults_but_not_a_familys_own():
    recipe = recipes.get("decoder_lm")
    config = recipe.get_config()
    del config["remat"], config["positional"]
    recipe.validate(config)
    assert config.remat == "none" and "positional" not in config  # NANOGPT's meaning stays


def test_model_knobs_reach_every_module_with_the_field():
    from jaxdl.recipes.text2img import text_to_image_model

    config = recipes.get("text2img").get_config()
    config.update(remat="block", attention_impl="xla", dtype="bfloat16")
    model = configure_model(text_to_image_model(config, 10), config)
    for module in (model.encoder, model.unet):
        assert (module.remat, module.attention_impl, module.dtype.__name__) == (
            "block", "xla", "bfloat16")


def test_a_key_twice_in_a_table_is_refused():
    with pytest.raises(ValueError, match="'seed' is in the table twice"):
        options.table(options.COMMON, [options.Option("seed", 1)])
