"""The README's test command is `.ci/run`, and `.ci/run` fails whenever the tests did not pass.

`.ci/run` runs here against a stub `.venv/bin/python` that records what it was asked to run, so
the script's own logic (offline settings, -ra, a required browser under CI, exit codes) is checked
in a second, without installing anything.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CI_RUN = REPO / ".ci" / "run"

STUB_PYTHON = """#!/usr/bin/env bash
# Records the pytest call and its environment; exits with $STUB_PYTEST_EXIT for pytest.
if [ "$1 $2" = "-m pytest" ]; then
  shift 2
  {
    echo "args=$*"
    echo "HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-}"
    echo "TRANSFORMERS_OFFLINE=${TRANSFORMERS_OFFLINE:-}"
    echo "WORKBENCH_REQUIRE_BROWSER=${WORKBENCH_REQUIRE_BROWSER:-}"
    echo "WORKBENCH_REQUIRE_POSTGRES=${WORKBENCH_REQUIRE_POSTGRES:-}"
  } > "$STUB_RECORD"
  exit "${STUB_PYTEST_EXIT:-0}"
fi
exit 0
"""


def quick_start_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = re.search(r"^## Quick start\n(.*?)^## ", text, re.S | re.M)
    assert section, "README.md has no '## Quick start' section"
    block = re.search(r"```bash\n(.*?)```", section.group(1), re.S)
    assert block, "the Quick start has no bash block"
    return [line.strip() for line in block.group(1).splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def test_readme_quick_start_is_two_commands_run_app_then_ci_run():
    app, tests = quick_start_commands()
    assert "pip install -r requirements.txt" in app and "streamlit run streamlit_app.py" in app
    assert tests == "bash .ci/run"


def test_ci_run_is_valid_bash_that_stops_on_errors():
    subprocess.run(["bash", "-n", str(CI_RUN)], check=True)
    text = CI_RUN.read_text()
    assert "set -euo pipefail" in text
    assert not re.search(r"\buv\b", text), "CI installs with pip (uv ignores the local torch wheel)"
    assert "-r requirements.txt -r requirements-dev.txt" in text


@pytest.fixture
def stub_repo(tmp_path):
    """A repository copy holding only .ci/run and a stub .venv/bin/python."""
    (tmp_path / ".ci").mkdir()
    shutil.copy(CI_RUN, tmp_path / ".ci" / "run")
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(STUB_PYTHON)
    python.chmod(0o755)
    return tmp_path


def run_ci(repo: Path, pytest_exit: int, ci: bool) -> tuple[subprocess.CompletedProcess, dict]:
    record = repo / "record.txt"
    env = {key: value for key, value in os.environ.items()
           if key not in ("CI", "WORKBENCH_REQUIRE_BROWSER", "WORKBENCH_REQUIRE_POSTGRES",
                          "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    # Executables that exist (a browser, PostgreSQL's initdb), so the script never reaches for
    # apt-get here.
    postgres_bin = repo / "postgres-bin"
    postgres_bin.mkdir(exist_ok=True)
    shutil.copy(shutil.which("true"), postgres_bin / "initdb")
    env.update(STUB_RECORD=str(record), STUB_PYTEST_EXIT=str(pytest_exit),
               WORKBENCH_CHROMIUM=shutil.which("bash"), WORKBENCH_POSTGRES_BIN=str(postgres_bin))
    if ci:
        env["CI"] = "true"
    result = subprocess.run(["bash", ".ci/run", "-k", "something"], cwd=repo, env=env,
                            capture_output=True, text=True, stdin=subprocess.DEVNULL,
                            timeout=60)
    recorded = dict(line.split("=", 1) for line in record.read_text().splitlines())
    return result, recorded


def test_ci_run_runs_pytest_offline_with_ra_and_requires_the_browser_under_ci(stub_repo):
    result, recorded = run_ci(stub_repo, pytest_exit=0, ci=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert recorded["args"].split() == ["-ra", "-k", "something"]
    assert recorded["HF_HUB_OFFLINE"] == "1" and recorded["TRANSFORMERS_OFFLINE"] == "1"
    assert recorded["WORKBENCH_REQUIRE_BROWSER"] == "1"
    assert recorded["WORKBENCH_REQUIRE_POSTGRES"] == "1"
    assert "pytest" in result.stdout and "total" in result.stdout  # the phase timings


def test_ci_run_lets_the_browser_test_skip_outside_ci(stub_repo):
    result, recorded = run_ci(stub_repo, pytest_exit=0, ci=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert recorded["WORKBENCH_REQUIRE_BROWSER"] == ""
    assert recorded["WORKBENCH_REQUIRE_POSTGRES"] == ""


@pytest.mark.parametrize("pytest_exit", [1, 5])
def test_ci_run_fails_when_tests_fail_or_none_are_collected(stub_repo, pytest_exit):
    result, _ = run_ci(stub_repo, pytest_exit=pytest_exit, ci=True)
    assert result.returncode == pytest_exit
    if pytest_exit == 5:
        assert "collected no tests" in result.stdout


def test_ci_run_checks_the_code_with_ruff_and_mypy_before_the_tests():
    text = CI_RUN.read_text()
    tests = text.index(".venv/bin/python -m pytest")
    assert text.index(".venv/bin/python -m ruff check .") < tests, "ruff runs before pytest"
    assert text.index(".venv/bin/python -m mypy interp/") < tests, "mypy runs before pytest"
