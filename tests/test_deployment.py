"""What a host installs and shows: requirements.txt's torch per platform, the demo model's size."""

from __future__ import annotations

import re
from pathlib import Path

from packaging.requirements import Requirement
from transformers import AutoModelForCausalLM

from interp.models import DEMO_MODEL_DIR, MODEL_REGISTRY

REPO = Path(__file__).resolve().parent.parent
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def requirement_lines() -> list[str]:
    lines = (REPO / "requirements.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def torch_pins(platform: str) -> list[str]:
    """The torch specifiers that apply on `platform`, by packaging's own marker evaluation."""
    pins = []
    for line in requirement_lines():
        if line.startswith("-"):
            continue
        requirement = Requirement(line)
        applies = requirement.marker is None or requirement.marker.evaluate(
            {"sys_platform": platform})
        if requirement.name == "torch" and applies:
            pins.append(str(requirement.specifier))
    return pins


def test_linux_gets_the_cpu_build_of_torch_from_pytorchs_index():
    """On Linux PyPI's torch is the CUDA build; the +cpu build lives on PyTorch's index."""
    assert torch_pins("linux") == ["==2.13.0+cpu"]
    assert f"--extra-index-url {CPU_INDEX}" in requirement_lines()


def test_other_platforms_get_the_normal_wheel():
    assert torch_pins("darwin") == ["==2.13.0"]
    assert torch_pins("win32") == ["==2.13.0"]


def test_demo_size_is_one_number_from_the_registry():
    """Reference: transformers' own parameter count of the bundled folder. The README quotes
    the registry's number, so the picker, the model card and the README can't disagree."""
    n_params = AutoModelForCausalLM.from_pretrained(DEMO_MODEL_DIR).num_parameters()
    assert MODEL_REGISTRY["demo"].n_params == n_params
    demo_row = re.search(r"^\| Demo model \| ([^|]+) \|", (REPO / "README.md").read_text(), re.M)
    assert demo_row and demo_row.group(1).strip() == f"{n_params:,}"


def test_the_default_server_config_watches_no_files():
    """Invariant read from the shipped config itself: a recursive watch of the repository root
    floods the log when .venv changes, so the default run watches nothing."""
    import tomllib

    config = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())
    assert config["server"]["fileWatcherType"] == "none"
