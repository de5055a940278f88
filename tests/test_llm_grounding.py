"""The grounding check and the safe rendering of AI replies, on canned replies.

Facts come from hand-made patching results whose numbers are worked out by hand in each test;
the HTML a reply would become is rendered by markdown-it-py (a CommonMark implementation, with
raw HTML switched on, the most permissive setting), not by the code under test.
"""

from __future__ import annotations

import dataclasses

import torch
from markdown_it import MarkdownIt

from interp import patching_tasks as tasks
from interp.explain import explain
from interp.explain_llm import (
    LLMExplanation,
    check_grounding,
    escape_reply,
    known_facts,
    offline_explanation,
    render_markdown,
    to_markdown,
    to_record,
)
from interp.explain_llm.prompt import method_description
from interp.patching import patch
from tests.llm_results import head_result, residual_result

PROMPT = "When Mary and John went to the store, John gave a drink to"


def facts_of(result, prompt: str = PROMPT):
    return known_facts(explain(result), tokens=result.tokens, prompt=prompt)


def unverified_texts(reply: str, result) -> list[str]:
    return [m.text for m in check_grounding(reply, facts_of(result)).unverified]


def test_a_correct_reply_passes():
    reply = ("Patching L1 pos 0 '<|endoftext|>' restores 80% of the gap (metric 0.8) and holds "
             "0.57 of the summed effect; L0 pos 1 'x' restores 50% and L1 pos 1 about 7%. "
             "Layers 0 and 1 both matter; the top 3 hold 100%. The clean value is 1.0.")
    report = check_grounding(reply, facts_of(residual_result()))
    assert report.unverified == ()
    kinds = [m.kind for m in report.mentions]
    assert kinds.count("component") == 4 and kinds.count("token") == 2
    assert kinds.count("number") == 7  # the "3" of "top 3" is a count: not checked
    assert report.summary() == "All 13 names and values in this reply are in the result."


def test_a_made_up_component_and_a_made_up_number_are_flagged():
    reply = ("L1 pos 0 restores 80% of the gap, but the real work is done by head L9H6, which "
             "restores 73% on its own, and the logit difference of 4.12 comes from layer 1 MLP.")
    report = check_grounding(reply, facts_of(residual_result()))
    assert [m.text for m in report.unverified] == ["L9H6", "73%", "4.12", "layer 1 MLP"]
    assert report.n_unverified == 4 and report.n_checked == 6
    assert report.summary().startswith("4 of 6 names and values")


def test_numbers_must_be_roundings_of_a_result_value():
    # 0.5714 rounds to 0.57 and 57.1%; 0.58 and 58% are not roundings of any value here.
    assert unverified_texts("shares of 0.57, 57.1% and 0.571", residual_result()) == []
    assert unverified_texts("shares of 0.58 and 58%", residual_result()) == ["0.58", "58%"]
    assert unverified_texts("a negative effect of -0.8", residual_result()) == []


def test_head_names_in_every_spelling_are_checked_against_the_heads_in_the_result():
    reply = ("L1H2, L1 H2, head 1.2, layer 1, head 2 and head 2 of layer 1 are one head; "
             "heads 0.1 and 1.0 follow. L1 attn carries it. Head 0.3, L5H1 and the layer 1 MLP "
             "are not in the result.")
    assert unverified_texts(reply, head_result()) == ["Head 0.3", "L5H1", "layer 1 MLP"]


def test_an_attention_or_mlp_block_is_known_only_where_the_result_patched_one():
    kl_metric = dataclasses.replace(residual_result(), metric_name="kl_to_clean")
    assert unverified_texts("L1 attn and layer 0 MLP", kl_metric) == ["L1 attn", "layer 0 MLP"]
    mlp_out = dataclasses.replace(residual_result(), site="mlp_out")
    assert unverified_texts("layer 1 MLP, not L1 attn", mlp_out) == ["L1 attn"]


def test_quoted_tokens_must_come_from_the_result_or_its_prompt():
    reply = "The model copies 'Mary' over ' John', reads `logit_diff`, and ignores \"Paris\"."
    assert unverified_texts(reply, residual_result()) == ['"Paris"']


def test_a_norm_named_like_a_layer_is_not_a_layer():
    assert unverified_texts("an L2 norm of the update", residual_result()) == []
    assert unverified_texts("the L2 output", residual_result()) == ["L2"]


def ai_explanation(reply: str, result) -> LLMExplanation:
    offline = explain(result)
    return LLMExplanation(title=offline.title, text=reply, source="groq", offline=offline,
                          grounding=check_grounding(reply, facts_of(result)),
                          model="openai/gpt-oss-20b", level="newcomer")


def rendered_html(markdown: str) -> str:
    return MarkdownIt("commonmark", {"html": True}).render(markdown)


def test_script_and_image_tags_in_a_reply_show_as_text():
    reply = ("L1 pos 0 matters.<script>alert('key')</script> <img src=x onerror=alert(1)> "
             "![pixel](http://example.com/p.png) [click](http://example.com) $x^2$ &lt;b&gt;")
    html = rendered_html(render_markdown(ai_explanation(reply, residual_result())))
    assert "<script" not in html and "<img" not in html and "<a " not in html
    assert "&lt;script&gt;alert" in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "&amp;lt;b&amp;gt;" in html  # an entity in the reply shows as typed
    for exported in (to_markdown(ai_explanation(reply, residual_result())),):
        html = rendered_html(exported)
        assert "<script" not in html and "<img" not in html


def test_unverified_spans_are_highlighted_and_verified_ones_are_not():
    reply = "L1 pos 0 restores 80%, and L9H6 restores 73%."
    explanation = ai_explanation(reply, residual_result())
    shown = render_markdown(explanation)
    assert shown == "L1 pos 0 restores 80%, and :orange-background[L9H6] restores :orange-background[73%]."
    exported = to_markdown(explanation)
    assert "**L9H6** (unverified)" in exported and "**73%** (unverified)" in exported
    assert "2 of 4 names and values" in exported
    record = to_record(explanation)
    assert [span["text"] for span in record["grounding"]["unverified"]] == ["L9H6", "73%"]


def test_escaping_chunk_by_chunk_equals_escaping_the_whole_reply():
    reply = "<img src=x onerror=alert(1)> a \\ b [c](d) $e$ & f"
    chunks = [reply[i:i + 3] for i in range(0, len(reply), 3)]
    assert "".join(escape_reply(c) for c in chunks) == escape_reply(reply)


def test_the_offline_explanation_exports_as_itself_with_its_reason():
    offline = explain(residual_result())
    explanation = offline_explanation(offline)
    assert render_markdown(explanation) == offline.markdown
    exported = to_markdown(explanation)
    assert exported.startswith(f"## {offline.title}\n") and offline.markdown in exported
    assert "Offline explanation" in exported


def test_the_method_description_is_the_prose_of_the_family_docstring():
    description = method_description(residual_result())
    assert description.startswith("Activation patching: which activations carry")
    assert "API (all patched runs" not in description and "patch(model" not in description


def test_a_reply_about_an_engine_result_is_checked_against_its_own_heads(tiny_model):
    """Reference: the strongest head found here with torch.argsort on |normalized|, independently
    of the explainer's ranking; the tiny model has 2 layers, so L7H1 can't be in any result."""
    sentence = "The keys to the cabinet are on the table"
    task = tasks.agreement_task(tiny_model, sentence)
    inputs, metric = tasks.task_inputs(tiny_model, task)
    result = patch(tiny_model, inputs, metric, site="z", granularity="head")
    flat = result.normalized.flatten()
    layer, head = divmod(int(torch.argsort(flat.abs(), descending=True)[0]), result.normalized.shape[1])
    strongest = float(result.normalized[layer, head])
    reply = (f"Head {layer}.{head} (L{layer}H{head}) moves the metric by {strongest:.2f} of the "
             f"gap for the word 'cabinet'; L7H1 restores 0.93 and 'Paris' matters.")
    report = check_grounding(reply, known_facts(explain(result), tokens=result.tokens,
                                                prompt=sentence))
    assert [m.text for m in report.unverified] == ["L7H1", "0.93", "'Paris'"]
