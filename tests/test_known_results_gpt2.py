"""Known results on real GPT-2 small: every check with a pass rule passes (marker `gpt2`).

These run only where GPT-2 small is already in the Hugging Face cache (nothing is downloaded):
`pytest -m gpt2`. Elsewhere they skip with that reason. The references are the papers' own
findings, cited in `interp.known_results`.
"""

import pytest

from interp import known_results as kr

pytestmark = pytest.mark.gpt2


def cached_gpt2() -> str | None:
    """The cached snapshot folder of GPT-2 small, or None (offline lookup only)."""
    from huggingface_hub import try_to_load_from_cache

    for repo_id in kr.GPT2_SMALL_IDS:
        found = try_to_load_from_cache(repo_id, "config.json")
        if isinstance(found, str):
            return repo_id
    return None


@pytest.fixture(scope="module")
def gpt2():
    repo_id = cached_gpt2()
    if repo_id is None:
        pytest.skip("GPT-2 small not in the Hugging Face cache")
    from interp.models import load_model

    return load_model(repo_id)


@pytest.fixture(scope="module")
def report(gpt2):
    return kr.known_results(gpt2)


def test_is_recognised_as_gpt2_small(gpt2):
    assert kr.gpt2_small_identity(gpt2)[0]


@pytest.mark.parametrize("finding", [
    "Induction heads", "Previous-token heads", "Duplicate-token heads",
    "IOI clean logit difference", "Name movers", "S-inhibition"])
def test_published_finding_reproduces(report, finding):
    """Reference: the finding as its paper states it (see the row's source)."""
    row = next(r for r in report.rows if r.finding.startswith(finding))
    assert row.verdict == kr.PASSED, f"{row.finding}: ours {row.ours}; {row.reason}"


def test_figure_only_findings_are_shown(report):
    assert [r.verdict for r in report.rows].count(kr.SHOWN) == 2
