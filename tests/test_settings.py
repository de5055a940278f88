"""Deployment settings: environment first, then secrets, then Community Cloud defaults."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest
import torch

from interp.errors import InvalidOptionError
from interp.settings import Settings, apply_torch_threads, env_name

README = Path(__file__).resolve().parent.parent / "README.md"


def test_defaults_fit_community_cloud():
    """Reference: Community Cloud's documented limits (about 2.7 GB, at most 2 cores) and the
    platform issue's defaults (2 language models, custom models on for a local install)."""
    settings = Settings.from_env(secrets=None, environ={})
    assert settings.memory_budget_gb == 2.7
    assert settings.max_models == 2
    assert settings.allow_custom_models is True
    assert 1 <= settings.torch_threads <= 2


def test_environment_wins_over_secrets_and_secrets_over_defaults():
    secrets = {"WORKBENCH_MAX_MODELS": 3, "WORKBENCH_ALLOW_CUSTOM_MODELS": False,
               "WORKBENCH_MEMORY_BUDGET_GB": "4.5"}
    environ = {"WORKBENCH_MAX_MODELS": "1", "WORKBENCH_TORCH_THREADS": "4",
               "WORKBENCH_MEMORY_BUDGET_GB": "  "}  # blank counts as unset
    settings = Settings.from_env(secrets=secrets, environ=environ)
    assert settings.max_models == 1  # environment
    assert settings.allow_custom_models is False  # secrets (a TOML bool)
    assert settings.memory_budget_gb == 4.5  # secrets, since the variable is blank
    assert settings.torch_threads == 4
    assert settings.result_cache_entries == Settings().result_cache_entries  # default


@pytest.mark.parametrize(("name", "value", "says"), [
    ("WORKBENCH_MAX_MODELS", "two", "whole number"),
    ("WORKBENCH_TORCH_THREADS", "0", "whole number"),
    ("WORKBENCH_MEMORY_BUDGET_GB", "-1", "above 0"),
    ("WORKBENCH_ALLOW_CUSTOM_MODELS", "maybe", "true"),
])
def test_bad_values_are_refused_with_what_to_write(name, value, says):
    with pytest.raises(InvalidOptionError, match=name) as raised:
        Settings.from_env(environ={name: value})
    assert says in str(raised.value)


def test_readme_documents_every_setting_in_one_table():
    """The README's settings table lists exactly the variables `Settings` reads."""
    names = set(re.findall(r"^\| `(WORKBENCH_[A-Z_]+)`", README.read_text(), re.M))
    assert names == {env_name(setting.name) for setting in fields(Settings)}


def test_torch_threads_are_applied():
    before = torch.get_num_threads()
    wanted = 1 if before != 1 else 2
    try:
        apply_torch_threads(Settings(torch_threads=wanted))
        assert torch.get_num_threads() == wanted
    finally:
        torch.set_num_threads(before)
