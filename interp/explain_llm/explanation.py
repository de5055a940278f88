"""An explanation as a page shows and exports it: the AI reply or, in its place, the offline text.

`LLMExplanation` says where its text came from ("groq" or "offline"), why it is offline when it
is, and how the grounding check went. `render_markdown` gives the Markdown to show (reply
escaped, unverified spans highlighted), `to_markdown` the text to copy or export, and
`to_record` a JSON-ready dict; none of them can contain the API key, which is never stored here.
"""

from __future__ import annotations

from dataclasses import dataclass

from interp.explain import Explanation
from interp.explain_llm.grounding import GroundingReport
from interp.explain_llm.prompt import plain_json
from interp.explain_llm.render import highlighted, plain_highlight, streamlit_highlight

SOURCES = ("groq", "offline")


@dataclass(frozen=True)
class LLMExplanation:
    """One explanation of a result.

    `text` is the model's raw reply (source "groq"; show it through `render_markdown`, never as
    is) or the offline Markdown (source "offline"). `message` is one line saying why the AI
    explanation is not shown ("" when it is); `failure` is the matching `LLMError.kind`.
    `offline` is always the offline explanation, `grounding` the check of a reply.
    """

    title: str
    text: str
    source: str
    offline: Explanation
    message: str = ""
    failure: str = ""
    grounding: GroundingReport | None = None
    model: str = ""
    level: str = ""
    from_cache: bool = False

    @property
    def is_ai(self) -> bool:
        return self.source == "groq"

    def source_label(self) -> str:
        if self.is_ai:
            return (f"AI explanation by {self.model} on Groq, for a {self.level}. Check it "
                    "against the figure: names and values not in the result are highlighted.")
        return "Offline explanation, written by a template from the result's own numbers."


def render_markdown(explanation: LLMExplanation) -> str:
    """The body to show with `st.markdown`: the reply with HTML, links, images and math escaped
    and unverified spans on an orange background, or the offline Markdown."""
    if not explanation.is_ai:
        return explanation.offline.markdown
    return highlighted(explanation.text, explanation.grounding, streamlit_highlight)


def to_markdown(explanation: LLMExplanation) -> str:
    """The explanation as a Markdown document, for "copy as Markdown" and report exports."""
    lines = [f"## {explanation.title}", "", f"*{explanation.source_label()}*", ""]
    if explanation.message:
        lines += [f"> {explanation.message}", ""]
    if explanation.is_ai:
        if explanation.grounding is not None:
            lines += [f"*{explanation.grounding.summary()}*", ""]
        lines.append(highlighted(explanation.text, explanation.grounding, plain_highlight))
    else:
        lines.append(explanation.offline.markdown)
    return "\n".join(lines).rstrip() + "\n"


def to_record(explanation: LLMExplanation) -> dict:
    """A JSON-ready dict of the explanation, its provenance, its grounding and its facts."""
    grounding = explanation.grounding
    return {
        "title": explanation.title,
        "source": explanation.source,
        "model": explanation.model,
        "level": explanation.level,
        "message": explanation.message,
        "failure": explanation.failure,
        "text": explanation.text,
        "markdown": to_markdown(explanation),
        "grounding": None if grounding is None else {
            "checked": grounding.n_checked,
            "unverified": [{"text": m.text, "kind": m.kind, "start": m.start, "end": m.end}
                           for m in grounding.unverified],
        },
        "facts": plain_json(explanation.offline.facts),
    }
