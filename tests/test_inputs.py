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
