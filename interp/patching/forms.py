"""What each patching task asks for, described once for the page's forms and the API's requests.

Each task kind maps to the `InputField`s of its task builder in `interp.patching_tasks`
(`agreement_task`, `ioi_task`, `fact_task`, `custom_task`) and `interp.induction`
(`induction_task`), in form order; `run_fields` are the
options every task shares (what to patch, direction, metric, attribution). A form's keys are the
page's session-state names, kept stable so that saved state and links survive renames.
"""

from __future__ import annotations

from interp import induction
from interp import patching_tasks as tasks
from interp.inputs import InputField
from interp.patching import DEFAULT_NOISE_SCALE, DIRECTIONS
from interp.patching.sweeps import (
    ALIGN_LABELS,
    AUTO_METRIC,
    CORRUPTION_LABELS,
    DEFAULT_SWEEPS,
    INPUT_HELP,
    SWEEPS,
)

AGREEMENT_FIELDS = (
    InputField("sentence", "Sentence (subject, then a verb such as is/are)",
               tasks.DEFAULT_AGREEMENT_SENTENCE),
    InputField("corrupted_prefix", "Corrupted prefix (optional)", "", empty_means_none=True,
               help=INPUT_HELP["corrupted_prefix"]),
)

IOI_FIELDS = (
    InputField("n_prompts", "Number of prompts", 8, kind="slider", key="ioi_n", minimum=1,
               maximum=32, help=INPUT_HELP["ioi_n"]),
    InputField("seed", "Seed", 0, kind="integer", key="ioi_seed", minimum=0, step=1),
    InputField("corruption", "Corruption", "swap", kind="radio", key="ioi_corruption",
               choices=tuple(tasks.IOI_CORRUPTIONS), choice_labels=CORRUPTION_LABELS, column=1,
               help=INPUT_HELP["ioi_corruption"]),
    InputField("order", "Name order", "both", kind="radio", key="ioi_order",
               choices=tasks.IOI_ORDERS, column=2, help=INPUT_HELP["ioi_order"]),
    InputField("template", "Template", tasks.IOI_TEMPLATES[0], kind="choice", key="ioi_template",
               choices=tuple(tasks.IOI_TEMPLATES), row=1),
)

FACT_FIELDS = (
    InputField("prompt", "Prompt", tasks.DEFAULT_FACTS[0].prompt, key="fact_prompt"),
    InputField("answer", "Answer (one token)", tasks.DEFAULT_FACTS[0].answer, key="fact_answer",
               row=1),
    InputField("subject", "Subject (as written in the prompt)", tasks.DEFAULT_FACTS[0].subject,
               key="fact_subject", row=1, empty_means_none=True),
    InputField("corruption", "Corruption", "subject", kind="radio", key="fact_corruption",
               choices=tasks.FACT_CORRUPTIONS, choice_labels=CORRUPTION_LABELS, row=1, column=1,
               help=INPUT_HELP["fact_corruption"]),
    InputField("other_subject", "Replacement subject (optional)", "", key="fact_other", row=1,
               column=1, empty_means_none=True, help=INPUT_HELP["fact_other"],
               shown_when=("fact_corruption", ("subject",))),
    InputField("noise_scale", "Noise scale (x the embeddings' spread)", DEFAULT_NOISE_SCALE,
               kind="slider", minimum=0.5, maximum=10.0, step=0.5, row=1, column=1,
               shown_when=("fact_corruption", ("noise",))),
)

INDUCTION_FIELDS = (
    InputField("length", "Tokens per sequence (repeated once)", induction.DEFAULT_LENGTH,
               kind="integer", key="induction_length", minimum=1, step=1,
               help=INPUT_HELP["induction_length"]),
    InputField("n_sequences", "Number of sequences", induction.DEFAULT_SEQUENCES, kind="slider",
               key="induction_n", minimum=1, maximum=32, column=1),
    InputField("seed", "Seed", 0, kind="integer", key="induction_seed", minimum=0, step=1,
               column=2),
    InputField("corruption", "Corruption", "shuffle", kind="radio", key="induction_corruption",
               choices=tuple(induction.INDUCTION_CORRUPTIONS), choice_labels=CORRUPTION_LABELS,
               row=1, help=INPUT_HELP["induction_corruption"]),
    InputField("source", "Tokens from", "vocabulary", kind="radio", key="induction_source",
               choices=induction.SOURCES, choice_labels=induction.SOURCE_LABELS, row=1,
               column=1),
    InputField("words", "Word list", induction.DEFAULT_WORDS, kind="long_text",
               key="induction_words", row=2,
               shown_when=("induction_source", ("words",))),
)

CUSTOM_FIELDS = (
    InputField("clean", "Clean prompt", "", kind="long_text"),
    InputField("corrupted", "Corrupted prompt", "", kind="long_text"),
    InputField("correct", "Correct answer (one token)", "Mary", row=1),
    InputField("wrong", "Wrong answer (optional)", "John", row=1, column=1, empty_means_none=True),
    InputField("align", "If lengths differ", "none", kind="radio", choices=tasks.ALIGNMENTS,
               choice_labels=ALIGN_LABELS, row=1, column=2, help=INPUT_HELP["align"]),
)

TASK_FIELDS = {"agreement": AGREEMENT_FIELDS, "ioi": IOI_FIELDS, "fact": FACT_FIELDS,
               "induction": INDUCTION_FIELDS, "custom": CUSTOM_FIELDS}
TASK_BUILDERS = {"agreement": tasks.agreement_task, "ioi": tasks.ioi_task,
                 "fact": tasks.fact_task, "induction": induction.induction_task,
                 "custom": tasks.custom_task}

RUN_FIELDS = (
    InputField("sweeps", "What to patch", list(DEFAULT_SWEEPS), kind="multi_choice",
               choices=tuple(SWEEPS)),
    InputField("attribution", "Also run attribution patching and compare", True, kind="flag",
               help=INPUT_HELP["attribution"]),
    InputField("direction", "Direction", "denoising", kind="radio", choices=tuple(DIRECTIONS),
               row=1, help=INPUT_HELP["direction"]),
    InputField("metric", "Metric", AUTO_METRIC, kind="choice",
               choices=(AUTO_METRIC, *tasks.METRICS), row=1, column=1),
)
