"""Showing and exporting an AI explanation safely.

A model's reply is untrusted text: it is shown as Markdown whose HTML, links, images and math are
escaped (so `<script>` or `<img onerror=...>` read as text), with the names and values the
grounding check could not find in the result highlighted. The offline explanation is the
library's own Markdown (tokens already escaped) and is shown as it is.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from interp.explain_llm.grounding import GroundingReport

# Backslash first (so no escape can be undone); then HTML, entities, math, links and images.
REPLY_SPECIAL = re.compile(r"([\\<>&$\[\]])")


def escape_reply(text: str) -> str:
    """Backslash-escape what could turn a reply into HTML, a link, an image or math; one
    character at a time, so escaping chunk by chunk gives the same text as escaping the whole."""
    return REPLY_SPECIAL.sub(r"\\\1", text)


def streamlit_highlight(escaped: str) -> str:
    """An unverified span highlighted in Streamlit's Markdown."""
    return f":orange-background[{escaped}]"


def plain_highlight(escaped: str) -> str:
    """An unverified span marked in plain Markdown."""
    return f"**{escaped}** (unverified)"


def highlighted(reply: str, report: GroundingReport | None,
                highlight: Callable[[str], str] = streamlit_highlight) -> str:
    """The escaped reply with each unverified span passed through `highlight`."""
    if report is None:
        return escape_reply(reply)
    parts, position = [], 0
    for mention in report.unverified:
        parts.append(escape_reply(reply[position:mention.start]))
        parts.append(highlight(escape_reply(reply[mention.start:mention.end])))
        position = mention.end
    parts.append(escape_reply(reply[position:]))
    return "".join(parts)
