"""The `interp-caption` directive: a figure's "how to read this" caption, as the app writes it.

The pages' captions are written by `interp.figures` from each result. A guide that explains a
figure shows the app's own caption for one example run on the bundled demo model, computed
while the site builds, so the guide and the page read the same words:

    ```{interp-caption} patching
    ```

The examples are small (a few prompts, one forward pass or sweep each) and run once per build.
"""

from __future__ import annotations

from collections.abc import Callable

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective

PROMPT = "When Mary and John went to the store, John gave a drink to"


def patching_example(model):
    from interp.patching import patch_resid
    from interp.patching_tasks import ioi_task, task_inputs

    inputs, metric = task_inputs(model, ioi_task(model, n_prompts=2), "logit_diff")
    return patch_resid(model, inputs, metric, site="resid_pre", direction="denoising"), {}


def heads_example(model):
    from interp.patching import patch_heads
    from interp.patching_tasks import ioi_task, task_inputs

    inputs, metric = task_inputs(model, ioi_task(model, n_prompts=2), "logit_diff")
    return patch_heads(model, inputs, metric, direction="noising"), {}


def lens_example(model):
    from interp.logit_lens import logit_lens

    return logit_lens(model, PROMPT, k=3), {}


def dla_example(model):
    from interp.logit_lens import direct_logit_attribution

    return direct_logit_attribution(model, PROMPT), {}


def attention_example(model):
    from interp.attention import attention_patterns

    return attention_patterns(model, PROMPT), {}


def head_scores_example(model):
    from interp.attention import head_scores

    return head_scores(model, repeat_length=8), {"kind": "induction"}


def induction_example(model):
    from interp import induction

    return induction.check_induction(model, induction.induction_task(model, length=8,
                                                                     n_sequences=2)), {}


def prediction_example(model):
    from interp import next_token_topk

    return next_token_topk(model, PROMPT, k=5), {}


EXAMPLES: dict[str, Callable] = {
    "patching": patching_example, "patching_heads_noising": heads_example,
    "logit_lens": lens_example, "dla": dla_example, "attention": attention_example,
    "head_scores": head_scores_example, "induction_check": induction_example,
    "prediction": prediction_example,
}
_captions: dict[str, str] = {}
_model = []


def caption_of(name: str) -> str:
    """The app's caption of example `name` on the demo model (computed once per build)."""
    if name not in _captions:
        from interp.figures import figure_for
        from interp.models import load_model

        if not _model:
            _model.append(load_model("demo", device="cpu"))
        result, options = EXAMPLES[name](_model[0])
        _captions[name] = figure_for(result, **options).caption
    return _captions[name]


class InterpCaption(SphinxDirective):
    """Renders the app's caption of a named example, quoted, as MyST Markdown."""

    required_arguments = 1
    has_content = False

    def run(self) -> list[nodes.Node]:
        name = self.arguments[0]
        if name not in EXAMPLES:
            raise self.error(f"unknown caption example {name!r}; known: {', '.join(EXAMPLES)}")
        lines = [f"> {line}" if line.strip() else ">" for line in caption_of(name).splitlines()]
        container = nodes.container(classes=["interp-caption"])
        self.state.nested_parse(StringList(lines, source=f"interp-caption {name}"),
                                self.content_offset, container)
        return [container]


def setup(app):
    app.add_directive("interp-caption", InterpCaption)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
