"""What the SAE page says and exports about its results: offline explanations built from the
results' own numbers, and the CSV tables (features, a feature's contexts, a prompt's features,
training curves)."""

from __future__ import annotations

import io
import zipfile
from collections import Counter
from pathlib import Path
from tempfile import TemporaryDirectory

from interp.explain import Explanation, md_escape, register_explainer
from interp.export import register_csv, table_to_csv
from interp.sae.features import FeatureContext, FeatureReport, FeatureScan, PromptFeatures
from interp.sae.runs import SAERun, log10_density
from interp.sae.saelens import save_saelens
from interp.sae.training import TrainedSAE

N_SHOWN = 5


def context_text(context: FeatureContext) -> str:
    """A context as plain text with the example token in [[double brackets]]."""
    return "".join(f"[[{token}]]" if index == context.focus else token
                   for index, token in enumerate(context.tokens))


@register_explainer(FeatureReport)
def explain_feature(report: FeatureReport) -> Explanation:
    """What a feature seems to track: the tokens it fires on most, its contexts, its logits."""
    focus_tokens = Counter(c.tokens[c.focus] for c in report.top_contexts)
    common = [token for token, _ in focus_tokens.most_common(N_SHOWN)]
    up = [token for token, _ in report.top_logits[:N_SHOWN]]
    down = [token for token, _ in report.bottom_logits[:N_SHOWN]]
    lines = [
        f"Feature {report.feature} of the SAE at `{md_escape(report.hook_name)}` fires on "
        f"{report.frequency:.2%} of the corpus tokens (max activation "
        f"{report.max_activation:.3g}).",
        "",
        "**Where it fires most**: on " + (", ".join(f"`{md_escape(t)}`" for t in common)
                                          if common else "no token of this corpus") + ".",
    ]
    for context in report.top_contexts[:3]:
        lines.append(f"- {md_escape(context_text(context))} ({context.value:.3g})")
    lines += ["", "**What it writes** (direct logit effect): pushes up "
              + ", ".join(f"`{md_escape(t)}`" for t in up) + "; pushes down "
              + ", ".join(f"`{md_escape(t)}`" for t in down) + ".", ""]
    if report.single_seed:
        lines.append("An SAE trained from another seed has no feature close to this one "
                     "(decoder cosine < 0.9): it may be an artefact of this run.")
    lines += ["**Caveats**: a feature's label from its top contexts can miss what it does at "
              "weak activations (see the quantile bands); the logit effect ignores every layer "
              "after the SAE's hook."]
    facts = {"feature": report.feature, "hook": report.hook_name, "model": report.model_name,
             "frequency": report.frequency, "max_activation": report.max_activation,
             "top_tokens": common, "top_logits": up, "bottom_logits": down,
             "single_seed": report.single_seed}
    return Explanation(title=f"SAE feature {report.feature}", markdown="\n".join(lines),
                       facts=facts)


@register_explainer(SAERun)
def explain_run(run: SAERun) -> Explanation:
    """How good the SAE is, in the metrics' own words."""
    m = run.metrics
    lines = [
        f"An SAE of {m.d_sae} features at `{md_escape(m.hook_name)}` "
        f"({'trained here' if run.trained else 'loaded from a folder'}).",
        "",
        f"- **L0** {m.l0:.1f}: features active per token on average.",
        f"- **Explained variance** {m.explained_variance:.3f} (1 - summed variance of the error "
        f"over summed variance of the activations); normalised MSE {m.normalized_mse:.3f}.",
        f"- **Cross-entropy loss recovered** {m.loss_recovered:.3f}: spliced in, the SAE gives "
        f"{m.splice.ce_spliced:.3f} nats per token against {m.splice.ce_clean:.3f} clean and "
        f"{m.splice.ce_zero:.3f} with the activation zeroed; KL to the clean model "
        f"{m.splice.kl_to_clean:.4f}.",
        f"- **Feature census**: {m.dead} dead, {m.ultra_rare} ultra-rare, {m.dense} dense.",
        "",
        "Explained variance alone can look good for a dense code (a PCA of the same width gets "
        "close); loss recovered says whether what the SAE keeps is what the model uses.",
    ]
    facts = {"hook": m.hook_name, "d_sae": m.d_sae, "l0": m.l0,
             "explained_variance": m.explained_variance, "normalized_mse": m.normalized_mse,
             "loss_recovered": m.loss_recovered, "ce_clean": m.splice.ce_clean,
             "ce_spliced": m.splice.ce_spliced, "ce_zero": m.splice.ce_zero,
             "kl_to_clean": m.splice.kl_to_clean, "dead": m.dead, "dense": m.dense}
    return Explanation(title="Sparse autoencoder quality", markdown="\n".join(lines), facts=facts)


@register_csv(FeatureScan)
def features_csv(scan: FeatureScan) -> bytes:
    """A feature scan as CSV bytes, one row per feature."""
    return table_to_csv(["feature", "frequency", "max_activation", "mean_when_active"],
                        [(i, float(scan.frequency[i]), float(scan.max_activation[i]),
                          float(scan.mean_active[i])) for i in range(len(scan.frequency))])


@register_csv(FeatureReport)
def feature_contexts_csv(report: FeatureReport) -> bytes:
    """A feature's top and quantile-band contexts as CSV bytes."""
    rows = [("top", context_text(c), c.value) for c in report.top_contexts]
    rows += [(band, context_text(c), c.value) for band, contexts in report.bands
             for c in contexts]
    return table_to_csv(["group", "context", "activation"], rows)


@register_csv(PromptFeatures)
def prompt_features_csv(result: PromptFeatures) -> bytes:
    """A prompt's feature activations as CSV bytes, one row per token."""
    return table_to_csv(["position", "token", *[f"F{f}" for f in result.features]],
                        [(p, t, *result.activations[p].tolist())
                         for p, t in enumerate(result.tokens)])


@register_csv(TrainedSAE)
def training_csv(trained: TrainedSAE) -> bytes:
    """A training run's history as CSV bytes, one row per evaluation step."""
    return table_to_csv(["step", "loss", "mse", "l0", "explained_variance", "dead_features"],
                        [(p.step, p.loss, p.mse, p.l0, p.explained_variance, p.dead_features)
                         for p in trained.history])


def saelens_zip(run: SAERun) -> bytes:
    """The run's SAE as a zipped SAELens folder (with its feature densities)."""
    buffer = io.BytesIO()
    with TemporaryDirectory() as folder, zipfile.ZipFile(buffer, "w") as archive:
        written = save_saelens(run.sae, Path(folder) / "sae", log10_density(run.scan))
        for path in sorted(written.iterdir()):
            archive.write(path, f"sae/{path.name}")
    return buffer.getvalue()
