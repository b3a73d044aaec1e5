"""From finished accumulators to outputs: per analysis, its tables and figures, a report section and headline numbers.

Each builder takes the pipeline's pass state (`pipeline._Pass`), an `ArtifactWriter` and the summary
dict it adds its headline numbers to, and returns the `Section` for the report. Layer series also go to the
tracker as native line plots (`out.tracker`); per-layer figures as frames of one key stepped by layer.
"""

from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

from lit_rcqa.analysis.completeness import COLUMNS as COMPLETENESS_COLUMNS
from lit_rcqa.analysis.embeddings import record_categories, tsne_points
from lit_rcqa.analysis.roles import ROLES
from lit_rcqa.plots.convergence import plot_convergence
from lit_rcqa.plots.highlight import highlight_html
from lit_rcqa.plots.heatmap import plot_jsd_heatmap
from lit_rcqa.plots.layers import plot_layer_series, plot_role_shares
from lit_rcqa.plots.report import Section
from lit_rcqa.plots.tsne import plot_tsne, plot_tsne_grid

TSNE_PERPLEXITY = 40.0     # the paper's


def _by_layer(layers, values) -> dict:
    return {name: (None if not np.isfinite(v) else float(v)) for name, v in zip(layers, values)}


def _layer_rows(layers, *columns) -> list[list]:
    return [[name, *(float(c[i]) for c in columns)] for i, name in enumerate(layers)]


def _series(out, name: str, series: dict, title: str, y: str) -> None:
    """The same per-layer lines as the figure, as a native tracker plot (W&B line plot, TensorBoard scalars)."""
    values = {k: np.asarray(v, dtype=float).tolist() for k, v in series.items()}
    out.tracker.layer_series(f"{out.prefix}/{name}", values, title, y)


def jsd_section(state, out, summary, **_) -> Section:
    section = Section("Jensen–Shannon divergence between layers",
                      f"Each cell is the JSD (bits, 0 to 1) between two layers' importance distributions over the "
                      f"passage, averaged over {state.n} examples. JSD near 0: the two layers attend to the same "
                      "passage tokens; near 1: to different ones. 'top-k retained' compares only each layer's k "
                      "most important tokens, 'top-k removed' everything but them.")
    off_diagonal = ~np.eye(len(state.layers), dtype=bool)
    summary["jsd"] = {}
    for name, acc in state.jsd.items():
        matrix = acc.mean()  # [L, L]
        label = "all tokens" if acc.variant == "all" else f"{acc.variant.replace('_', ' ')}, k = {acc.k}"
        section.figures.append(out.figure(name, plot_jsd_heatmap(matrix, state.layers, f"JSD between layers ({label})"),
                                          label))
        rows = [[n, *row] for n, row in zip(state.layers, matrix)]
        section.tables.append(out.table(name, ["layer", *state.layers], rows,
                                        meta={"variant": acc.variant, "k": acc.k, "n_examples": acc.count}))
        values = matrix[off_diagonal]
        summary["jsd"][name] = {"min": float(values.min()) if values.size else None,
                                "max": float(values.max()) if values.size else None}
    return section


def roles_section(state, out, summary, **_) -> Section:
    table = state.roles.table()
    section = Section("Word roles among each layer's top-k words",
                      f"Share (%) of each layer's top-{state.top_k} passage words that are the predicted answer, "
                      f"context (within {state.window} words of it), question words found in the passage, or "
                      "other; each row sums to 100. A rising answer share means the layer closes in on the answer.")
    section.figures.append(out.figure("roles", plot_role_shares(table, state.layers)))
    _series(out, "roles", {role: table.shares[:, j] for j, role in enumerate(ROLES)},
            "Word roles among the top-k words", "share of top-k words (%)")
    section.tables.append(out.table("roles", ["layer", *ROLES], _layer_rows(state.layers, *table.shares.T),
                                    meta={"k": state.top_k, "window": state.window, "n_examples": table.n_examples}))
    summary["roles"] = {role: _by_layer(state.layers, table.shares[:, j]) for j, role in enumerate(ROLES)}
    return section


def quantifiers_section(state, out, summary, **_) -> Section:
    section = Section("Quantifier questions (how many / how much)",
                      f"Share (%) of the passage's numerical words (other than the answer's) that reach each layer's "
                      f"top-{state.top_k}, on quantifier questions and, for reference, on the others. The second "
                      "table compares exact match and confidence of the two groups.")
    shares = {}
    for group, acc in state.numeric.items():
        if acc.n_examples:
            shares[group] = (acc.share(), acc.topk_share())
        else:
            section.notes.append(f"no {group} questions among the {state.n} examples")
            shares[group] = (np.full(len(state.layers), np.nan),) * 2
    section.figures.append(out.figure("quantifiers", plot_layer_series(
        {f"{g} questions": s[0] for g, s in shares.items()}, state.layers, "numerical words in top-k (%)",
        "Numerical non-answer words reaching the top-k")))
    _series(out, "quantifiers", {f"{g} questions": s[0] for g, s in shares.items()},
            "Numerical non-answer words reaching the top-k", "numerical words in top-k (%)")
    q, o = shares["quantifier"], shares["other"]
    section.tables.append(out.table(
        "quantifiers", ["layer", "quantifier_share", "quantifier_topk_share", "other_share", "other_topk_share"],
        _layer_rows(state.layers, q[0], q[1], o[0], o[1]),
        meta={"k": state.top_k, "n_quantifier": state.numeric["quantifier"].n_examples,
              "n_other": state.numeric["other"].n_examples, "detector": "rule-based (CD stand-in)"}))
    groups = state.outcomes.summary()
    rows = [[g, s.n, s.em, s.confidence_mean, s.confidence_median] for g, s in groups.items()]
    section.tables.append(out.table("quantifier_summary", ["group", "n", "em", "confidence_mean", "confidence_median"],
                                    rows))
    out.tracker.bar(f"{out.prefix}/quantifier_em", list(groups), [s.em for s in groups.values()],
                    "Exact match: quantifier questions and the others", "exact match (%)")
    summary["quantifiers"] = {"numeric_share": _by_layer(state.layers, q[0]),
                              "numeric_share_other": _by_layer(state.layers, o[0]),
                              **{g: {"n": s.n, "em": s.em, "confidence_mean": s.confidence_mean,
                                     "confidence_median": s.confidence_median} for g, s in groups.items()}}
    return section


def flips_section(state, out, summary, **_) -> Section:
    section = Section("Decision flips",
                      "At each layer, the hidden state of the layer's top-1 IG passage token (or, as control, of a "
                      "random other passage token) is zeroed and the layers above are run again: how often does the "
                      "predicted span change? A ratio well above 1 means IG's top token matters more than chance.")
    if state.adapter is None:
        section.notes.append("skipped: no model was given, and flips re-run the model")
        return section
    acc = state.flips
    if state.flips_without_ids:
        section.notes.append(f"{state.flips_without_ids} records had no input ids and were left out")
    if acc.n_mismatched:
        section.notes.append(f"{acc.n_mismatched} records: the model's own span differs from the stored one "
                             "(flips compare against the model's)")
    if acc.n_examples == 0:
        section.notes.append("no record could be perturbed")
        return section
    top, rand, ratio = acc.top1_rate(), acc.random_rate(), acc.ratio()
    section.figures.append(out.figure("flips", plot_layer_series(
        {"top-1 IG token": 100 * top, "random passage token": 100 * rand}, state.layers,
        "predictions changed (%)", "Decision flips after zeroing one token")))
    _series(out, "flips", {"top-1 IG token": 100 * top, "random passage token": 100 * rand},
            "Decision flips after zeroing one token", "predictions changed (%)")
    section.tables.append(out.table("flips", ["layer", "top1_rate", "random_rate", "ratio", "n"],
                                    [[n, t, r, x, int(c)] for n, t, r, x, c in
                                     zip(state.layers, top, rand, ratio, acc.n_top1)],
                                    meta={"n_examples": acc.n_examples, "n_mismatched": acc.n_mismatched,
                                          "ratio": "top1_rate / random_rate; null where random_rate is 0"}))
    summary["flips"] = {"top1_rate": _by_layer(state.layers, top), "random_rate": _by_layer(state.layers, rand),
                        "ratio": _by_layer(state.layers, ratio), "n": acc.n_examples}
    return section


def evidence_section(state, out, summary, **_) -> Section:
    section = Section("Ground truth: IG mass on the supporting sentence",
                      "Share of each layer's passage importance on the sentence that answers the question (synthetic "
                      "set); 'chance' is what a layer spreading importance evenly over the passage would score.")
    acc = state.evidence
    if acc.count == 0:
        section.notes.append("skipped: no record has an evidence span (only the synthetic set has one)")
        summary["notes"].append("evidence skipped: no record has an evidence span")
        return section
    share, chance = acc.mean(), acc.chance()
    section.figures.append(out.figure("evidence", plot_layer_series(
        {"IG mass on evidence": share, "chance": np.full(len(share), chance)}, state.layers,
        "share of passage importance", "IG mass on the supporting sentence")))
    _series(out, "evidence", {"IG mass on evidence": share, "chance": np.full(len(share), chance)},
            "IG mass on the supporting sentence", "share of passage importance")
    section.tables.append(out.table("evidence", ["layer", "share", "chance"],
                                    _layer_rows(state.layers, share, np.full(len(share), chance)),
                                    meta={"n_examples": acc.count, "skipped": acc.skipped}))
    summary["evidence"] = {"share": _by_layer(state.layers, share), "chance": chance}
    return section


def tsne_section(state, out, summary, progress=True, **_) -> Section:
    section = Section("t-SNE of the hidden states",
                      f"Each point is one token of one example at one layer, projected to 2-D by t-SNE (perplexity "
                      f"{TSNE_PERPLEXITY:g}, clipped for short inputs): red the predicted answer, blue the question, "
                      "green the answer's sentence, black the special tokens. Answer tokens drifting apart from the "
                      "rest in later layers means those layers have singled out the answer.")
    if not state.tsne_jobs:
        section.notes.append("skipped: no stored hidden states for the analysed examples")
        return section
    for record, hidden in tqdm(state.tsne_jobs, disable=not progress, desc="t-SNE", unit="ex"):
        cats, stem = record_categories(record), "tsne_" + _safe(record.example_id)
        panels = []
        for name, h in zip(state.layers, hidden):  # h: [T, H]
            points = tsne_points(h, TSNE_PERPLEXITY)  # [T, 2]
            panels.append((points, cats, record.tokens))
            # one key per example, one frame per layer: the tracker's slider walks the layers
            section.figures.append(out.figure(f"{stem}_{name}", plot_tsne(points, cats, record.tokens,
                                                                         f"{record.example_id} — {name}"),
                                              key=f"tsne/{_safe(record.example_id)}", layer=name))
        section.figures.append(out.figure(f"{stem}_grid", plot_tsne_grid(panels, state.layers),
                                          f"{record.example_id}, all layers"))
    summary["tsne"] = {"examples": len(state.tsne_jobs)}
    return section


def html_section(state, out, summary, **_) -> Section:
    section = Section("Examples: each layer's top words",
                      f"The passage once per layer with its top-{state.top_k} words highlighted, darker for a "
                      "higher rank (hover for the importance); the title gives the question, the predicted and "
                      "the gold answer.", html="\n".join(state.highlights))
    for i, name in enumerate(state.layers):  # the tracker's per-layer view: every shown example at this layer
        if state.highlight_inputs:
            out.tracker.html(f"{out.prefix}/highlights_by_layer", "\n".join(
                highlight_html(context, spans, importance[i:i + 1], [name], state.top_k, title)
                for context, spans, importance, title in state.highlight_inputs), layer=name)
    if state.highlights:
        out.page("highlights.html", '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
                 f"<title>Top words per layer</title></head><body>\n{section.html}\n</body></html>\n",
                 log_name="highlights")
    return section


def completeness_section(state, out, summary, **_) -> Section:
    acc = state.completeness
    stats = acc.summary()  # [L, len(COMPLETENESS_COLUMNS)]
    flagged = (f" {acc.n_unconverged} (example, layer) pairs missed the accuracy target at the cap on evaluations "
               "(column unconverged); they are kept in the analyses above, counted here."
               if acc.n_unconverged else "")
    section = Section("Completeness of the attributions",
                      "δ = |ΣIG − (F(h) − F(b))| / |F(h) − F(b)| per example and layer: how far the "
                      f"attributions' sum is from the change they explain. δ below {acc.threshold:g} for most "
                      "examples means the integration used enough steps; the embedding layer converges slowest. "
                      "The right panel shows the gradient evaluations each layer used." + flagged)
    section.figures.append(out.figure("completeness", plot_convergence(acc.deltas.array(), acc.steps.array(),
                                                                       state.layers)))
    section.tables.append(out.table("completeness", ["layer", *COMPLETENESS_COLUMNS],
                                    _layer_rows(state.layers, *stats.T), meta={"threshold": acc.threshold}))
    _series(out, "completeness", {"median δ": stats[:, 0], "95th percentile δ": stats[:, 1]},
            "Completeness gap per layer", "completeness gap δ")
    above = COMPLETENESS_COLUMNS.index("share_above")
    out.tracker.bar(f"{out.prefix}/completeness_share_above", state.layers, 100 * stats[:, above],
                    f"Examples with δ above {acc.threshold:g}, per layer", "examples (%)")
    summary["completeness"] = {c: _by_layer(state.layers, stats[:, j]) for j, c in enumerate(COMPLETENESS_COLUMNS)}
    return section


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)[:48] or "example"


SECTION_BUILDERS = {"jsd": jsd_section, "roles": roles_section, "quantifiers": quantifiers_section,
                    "tsne": tsne_section, "flips": flips_section, "evidence": evidence_section, "html": html_section}
