"""The bundled demo model: a small GPT-2 trained offline on synthetic text with known behaviours.

Real GPT-2 weights cannot be downloaded everywhere, so the Workbench ships
`assets/models/demo-gpt2/`: a 4-layer, 4-head GPT-2 (`GPT2LMHeadModel`, d_model 128, context
128) with its own byte-level BPE tokenizer, trained by `python -m interp.demo_model.train` on a
seeded corpus (`corpus.py`) packed to the full context (`packing.py`) of exactly the behaviours
the pages study: indirect-object identification, subject-verb agreement across attractor
phrases, fact recall, induction on repeated random tokens, and a planted he/she-occupation
association with documented ratios. `evaluate.py` measures each behaviour on held-out prompts,
finds by mean ablation the heads each behaviour depends on, and names the induction circuit's
previous-token and induction heads with path patching between them; the results are in the
folder's README.md and ground_truth.json.
"""
