"""Input descriptions: what a form asks becomes exactly the analysis's keyword arguments."""

import inspect

import pytest

from interp.inputs import InputField, is_asked, values_from_answers
from interp.patching import forms, sweeps


def test_answers_become_typed_keyword_arguments():
    """Hand-written expectations: sliders give ints for int defaults, numbers floats, blank
    optional text None, and a field whose condition fails is left out."""
    fields = (
        InputField("n_prompts", "n", 8, kind="slider", key="ioi_n"),
        InputField("scale", "s", 3.0, kind="number"),
        InputField("wrong", "w", "", empty_means_none=True),
        InputField("other", "o", "", shown_when=("mode", ("subject",))),
        InputField("mode", "m", "noise", kind="radio", choices=("subject", "noise")),
        InputField("flag", "f", True, kind="flag"),
    )
    answers = {"ioi_n": 12.0, "scale": 2, "wrong": "  ", "other": "x", "mode": "noise",
               "flag": 1}
    assert values_from_answers(fields, answers) == {
        "n_prompts": 12, "scale": 2.0, "wrong": None, "mode": "noise", "flag": True}
    assert not is_asked(fields[3], answers)
    assert is_asked(fields[3], {**answers, "mode": "subject"})


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="Unknown input kind"):
        InputField("x", "x", 0, kind="dial")


@pytest.mark.parametrize("kind", list(forms.TASK_FIELDS))
def test_every_task_field_is_a_parameter_of_its_builder(kind):
    """Invariant against the builders' own signatures (inspect), so a renamed task argument
    cannot silently drop a form field."""
    parameters = inspect.signature(forms.TASK_BUILDERS[kind]).parameters
    for input_field in forms.TASK_FIELDS[kind]:
        assert input_field.argument in parameters, (kind, input_field.argument)
        default = parameters[input_field.argument].default
        # A builder's None means "work it out"; the form then offers an example instead.
        if default not in (inspect.Parameter.empty, None) and input_field.default != "":
            assert input_field.default == default, (kind, input_field.argument)


def test_run_fields_are_run_sweeps_parameters():
    """Invariant against `run_sweeps`'s signature."""
    parameters = inspect.signature(sweeps.run_sweeps).parameters
    assert {f.argument for f in forms.RUN_FIELDS} <= set(parameters)


def new_form_fields():
    from interp import behaviour, bias, toxicity
    from interp.sae import forms as sae_forms

    preset = bias.probe_preset(bias.default_preset_name("demo"))
    return [
        (toxicity.sampling_fields(20, 30), toxicity.continuations_toxicity),
        (toxicity.sampling_fields(8, 20), bias.group_toxicity),
        (bias.GROUP_TOXICITY_FIELDS, bias.group_toxicity),
        (bias.template_probe_fields(preset), bias.template_probe),
        (behaviour.CONFIDENCE_FIELDS[:1] + behaviour.CONFIDENCE_FIELDS[2:],
         behaviour.confidence_along),
        (sae_forms.training_fields(4) + sae_forms.MORE_TRAINING_FIELDS, sae_forms.training_setup),
    ]


def test_page_forms_fill_parameters_of_the_analyses_they_feed():
    """Invariant against each analysis's signature (inspect): a renamed argument cannot
    silently drop a toxicity, bias, confidence or SAE form field."""
    for fields, analysis in new_form_fields():
        parameters = inspect.signature(analysis).parameters
        for input_field in fields:
            assert input_field.argument in parameters, (analysis.__name__, input_field.argument)


def test_bad_preset_and_training_answers_raise_typed_errors_that_list_the_choices():
    from interp import bias
    from interp.errors import InvalidOptionError
    from interp.sae.forms import training_setup

    with pytest.raises(InvalidOptionError, match="Adjectives after an age"):
        bias.probe_preset("No such preset")
    with pytest.raises(InvalidOptionError, match="'topk'"):
        training_setup(4, architecture="sigmoid")
    with pytest.raises(InvalidOptionError, match="steps must be at least 1"):
        training_setup(4, steps=0)
    hook, config, max_tokens = training_setup(4, site="resid_pre", layer=1, k=8, steps=60)
    assert (hook, config.k, config.eval_every, config.dead_after_tokens, max_tokens) == (
        "blocks.1.hook_resid_pre", 8, 2, 512 * 50, 20_000)
