"""Render ``metrics.json`` into ``report.md`` and a self-contained ``report.html`` (PNGs embedded).

The report is built as a list of blocks (heading, paragraph, table, image) rendered twice, to
Markdown and to HTML, so the two always say the same thing.
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import Any, Sequence

from .stats import jsonable

#: |bias| / robust width above which a feature is flagged in the bias table.
BIAS_FLAG = 0.1


class Doc:
    """A minimal document model with Markdown and HTML renderers."""

    def __init__(self) -> None:
        self.blocks: list[tuple[str, Any]] = []

    def h(self, level: int, text: str) -> None:
        self.blocks.append(("h", (level, text)))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def code(self, text: str) -> None:
        self.blocks.append(("code", text))

    def table(self, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self.blocks.append(("table", (list(header), [list(r) for r in rows])))

    def img(self, path: str, alt: str) -> None:
        self.blocks.append(("img", (path, alt)))

    def markdown(self) -> str:
        out: list[str] = []
        for kind, v in self.blocks:
            if kind == "h":
                out.append("#" * v[0] + " " + v[1])
            elif kind == "p":
                out.append(v)
            elif kind == "code":
                out.append("```\n" + v + "\n```")
            elif kind == "table":
                header, rows = v
                out.append("| " + " | ".join(header) + " |")
                out[-1] += "\n|" + "|".join(" --- " for _ in header) + "|"
                for r in rows:
                    out[-1] += "\n| " + " | ".join(str(c) for c in r) + " |"
            elif kind == "img":
                out.append(f"![{v[1]}]({v[0]})")
            out.append("")
        return "\n".join(out)

    def html(self, base: Path, title: str) -> str:
        def inline(s: str) -> str:
            s = html.escape(str(s))
            # **bold** and `code` (the only inline Markdown the report uses)
            parts = s.split("**")
            s = "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))
            parts = s.split("`")
            return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))

        body: list[str] = []
        for kind, v in self.blocks:
            if kind == "h":
                body.append(f"<h{v[0]}>{inline(v[1])}</h{v[0]}>")
            elif kind == "p":
                body.append(f"<p>{inline(v)}</p>")
            elif kind == "code":
                body.append(f"<pre>{html.escape(v)}</pre>")
            elif kind == "table":
                header, rows = v
                t = ["<table><tr>" + "".join(f"<th>{inline(c)}</th>" for c in header) + "</tr>"]
                t += ["<tr>" + "".join(f"<td>{inline(c)}</td>" for c in r) + "</tr>" for r in rows]
                body.append("\n".join(t) + "</table>")
            elif kind == "img":
                data = base64.b64encode((base / v[0]).read_bytes()).decode("ascii")
                body.append(f'<p><img alt="{html.escape(v[1])}" src="data:image/png;base64,{data}"></p>')
        style = (
            "body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}"
            "table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #bbb;padding:2px 6px;"
            "font-size:13px;text-align:right}th{background:#eee}img{max-width:100%}pre{background:#f4f4f4;padding:6px}"
        )
        return (
            f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
        )


def fmt(v: Any, digits: int = 3) -> str:
    """Compact number formatting (``-`` for missing)."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            return "-"
        if v == 0:
            return "0"
        if abs(v) >= 1e4 or abs(v) < 1e-3:
            return f"{v:.{digits - 1}e}"
        return f"{v:.{digits}g}"
    return str(v)


def _headline(doc: Doc, metrics: dict[str, Any]) -> None:
    doc.h(2, "Headline numbers")
    doc.p(
        "Per object type: the feature with the largest |relative bias| (bias / std of the original), "
        "the largest relative resolution (robust width / std of the original), the largest |bias| / "
        "robust width, and the lowest accuracy of a binary or categorical feature."
    )
    rows = []
    for tok, tm in metrics["tokenizers"].items():
        for tname, h in tm["headline"]["per_type"].items():
            def w(key: str) -> str:
                x = h.get(key)
                return f"{fmt(x['value'])} ({x['feature']})" if x else "-"

            acc = h.get("accuracy_loss")
            rows.append([tok, tname, w("rel_bias"), w("rel_robust_width"), w("bias_over_width"),
                         f"{fmt(1 - acc['value'])} ({acc['feature']})" if acc else "-"])
    doc.table(["tokenizer", "type", "worst rel. bias", "worst rel. resolution", "worst bias/width", "lowest accuracy"], rows)
    rows = []
    for tok, tm in metrics["tokenizers"].items():
        hl = tm["headline"]
        shifts = ", ".join(f"{k}: {fmt(v)} GeV" for k, v in hl["mass_peak_shifts"].items() if v is not None) or "-"
        rows.append([tok, fmt(hl["mean_normalised_bias"]), shifts])
    doc.table(["tokenizer", "mean normalised bias (all continuous features)", "mass peak shifts (decoded - original)"], rows)


def _bias_table(doc: Doc, metrics: dict[str, Any]) -> None:
    doc.h(2, "Bias and resolution per feature")
    doc.p(
        f"Bias = mean(decoded - original); width = half the 15.9-84.1% interquantile range of the residual; "
        f"`norm` = in the tokenizer's normalised units (transform, then standardise). A **⚠** marks "
        f"|bias| / width > {BIAS_FLAG} or a normalised bias more than 5 standard errors from zero and "
        f"larger than 0.002 in size; the worst |bias|/width of each type is in **bold**."
    )
    for tok, tm in metrics["tokenizers"].items():
        doc.h(3, f"{tok}")
        rows = []
        for tname, t in tm["reconstruction"].items():
            feats = t.get("features", {})
            worst = (t.get("worst") or {}).get("bias_over_width") or {}
            for fname, m in feats.items():
                if "bias" not in m:
                    continue
                norm = m.get("norm") or {}
                bow = m.get("bias_over_width")
                nb, ne = norm.get("bias"), norm.get("bias_err")
                flag = (bow is not None and abs(bow) > BIAS_FLAG) or (
                    nb is not None and ne and abs(nb) > 5 * ne and abs(nb) > 0.002
                )
                bow_s = fmt(bow)
                if worst.get("feature") == fname:
                    bow_s = f"**{bow_s}**"
                resp = m.get("response") or {}
                rows.append([
                    ("⚠ " if flag else "") + f"{tname}.{fname}", m["n"], fmt(m["bias"]), fmt(m["robust_width"]),
                    fmt(m["std"]), bow_s, fmt(m.get("rel_bias")), fmt(m.get("rel_robust_width")),
                    f"{fmt(nb)} ± {fmt(ne, 2)}" if nb is not None else "-",
                    f"{fmt(resp.get('bias'))} / {fmt(resp.get('robust_width'))}" if resp else "-",
                ])
        doc.table(["feature", "n", "bias", "width", "std", "bias/width", "bias/σ_orig", "width/σ_orig",
                   "norm bias ± err", "response bias / width"], rows)


def _pt_bins(doc: Doc, metrics: dict[str, Any]) -> None:
    doc.h(2, "pT response in bins of the original pT")
    doc.p("Response = decoded pT / original pT - 1: its mean (bias) and robust width per bin (empty bins omitted).")
    rows = []
    for tok, tm in metrics["tokenizers"].items():
        for tname, t in tm["reconstruction"].items():
            m = t.get("features", {}).get("pt")
            if not m or "pt_bins" not in m:
                continue
            for b in m["pt_bins"]:
                if not b["n"]:
                    continue
                hi = "∞" if b["pt_hi"] is None or b["pt_hi"] == float("inf") else fmt(b["pt_hi"])
                rows.append([tok, tname, f"{fmt(b['pt_lo'])}-{hi}", b["n"], fmt(b.get("response_bias")),
                             fmt(b.get("response_robust_width")), fmt(b["bias"]), fmt(b["robust_width"])])
    doc.table(["tokenizer", "type", "pT bin [GeV]", "n", "response bias", "response width", "bias [GeV]", "width [GeV]"], rows)


def _classification(doc: Doc, metrics: dict[str, Any]) -> None:
    doc.h(2, "Binary and categorical features, taggers")
    rows, auc_rows, cms = [], [], []
    for tok, tm in metrics["tokenizers"].items():
        for tname, t in tm["reconstruction"].items():
            for fname, m in t.get("features", {}).items():
                if "accuracy" in m:
                    rows.append([tok, f"{tname}.{fname}", m["kind"], m["n"], fmt(m["accuracy"], 4)])
                    if m["kind"] == "categorical" and m["n"]:
                        cms.append((tok, f"{tname}.{fname}", m))
                if "roc" in m:
                    r = m["roc"]
                    auc_rows.append([tok, f"{tname}.{fname}", r["truth"], r["n"], r["n_signal"],
                                     fmt(r["auc_original"], 4), fmt(r["auc_decoded"], 4), fmt(r["auc_change"], 3)])
    doc.table(["tokenizer", "feature", "kind", "n", "accuracy"], rows)
    if auc_rows:
        doc.p("Tagger separating power: ROC AUC against the truth label, before and after decoding.")
        doc.table(["tokenizer", "tagger", "truth", "n", "n signal", "AUC original", "AUC decoded", "change"], auc_rows)
    else:
        doc.p("No truth labels for the taggers in these files (jets.truth_flavour, taus.truth_tau): no ROC AUC.")
    for tok, label, m in cms:
        doc.p(f"Confusion matrix of `{label}` ({tok}); rows original, columns decoded:")
        classes = m.get("classes") or [str(i) for i in range(len(m["confusion"]))]
        doc.table(["original \\ decoded", *classes], [[c, *row] for c, row in zip(classes, m["confusion"])])


def _physics(doc: Doc, metrics: dict[str, Any]) -> None:
    doc.h(2, "Physics after decoding")
    doc.p(
        "Observables computed with `vector` separately on the original and on the decoded events. "
        "Peak = mode-seeded iterative Gaussian core fit (3 iterations in mu ± 1.5 sigma; falls back to "
        "mode and robust width with fewer than 50 entries); m_ll is fitted in 70-110 GeV. "
        "Per-event residual: decoded - original where both are defined."
    )
    rows = []
    for tok, tm in metrics["tokenizers"].items():
        for name, m in tm["physics"].items():
            po, pd_ = m.get("peak_original"), m.get("peak_decoded")
            peak = lambda p: f"{fmt(p['position'])} ± {fmt(p['width'])}" if p and p.get("position") is not None else "-"  # noqa: E731
            r = m["residual"]
            rows.append([tok, name, m["n_original"], m["n_decoded"], fmt(m["mean_original"]), fmt(m["mean_decoded"]),
                         peak(po), peak(pd_), fmt(m.get("peak_shift")), fmt(r.get("bias")), fmt(r.get("robust_width"))])
    doc.table(["tokenizer", "observable", "n orig.", "n dec.", "mean orig.", "mean dec.", "peak orig.", "peak dec.",
               "peak shift", "per-event bias", "per-event width"], rows)


def _codebooks(doc: Doc, metrics: dict[str, Any]) -> None:
    doc.h(2, "Codebook usage on these files")
    doc.p("Counted on the tokens of the (truncated) sequences. Perplexity = exp(entropy); effective bits = log2(perplexity).")
    rows = []
    for tok, tm in metrics["tokenizers"].items():
        for tname, levels in tm["codebooks"].items():
            for lv, s in levels.items():
                rows.append([tok, tname, lv, s["n"], f"{s['used']}/{s['size']}", s["dead"], fmt(s["perplexity"]),
                             fmt(s["effective_bits"]), fmt(s["utilisation"]), fmt(s["top_code_fraction"])])
    doc.table(["tokenizer", "type", "level", "tokens", "used/K", "dead", "perplexity", "eff. bits", "perplexity/K",
               "top-code share"], rows)


def _sequences(doc: Doc, metrics: dict[str, Any]) -> None:
    doc.h(2, "Sequence check")
    rows = []
    for tok, tm in metrics["tokenizers"].items():
        for file, s in tm["sequences"].items():
            rows.append([tok, Path(file).name, s["n_events"], fmt(s["length_mean"]), fmt(s["length_median"]),
                         fmt(s["length_p99"]), s["length_max"], s["max_length"], fmt(s["fraction_above_max_length"], 4),
                         s["n_truncated_events"], s["n_truncated_objects"], s["n_rejected"]])
    doc.table(["tokenizer", "file", "events", "mean", "median", "99%", "max", "max_length", "frac. above",
               "truncated events", "truncated objects", "rejected"], rows)
    reads = metrics.get("read_stats") or {}
    notes = [f"`{Path(f).name}`: {s}" for f, s in reads.items() if s]
    if notes:
        doc.p("Reader notes (objects removed or values masked while reading): " + "; ".join(notes))


def build_doc(metrics: dict[str, Any], plots: dict[str, list[str]]) -> Doc:
    """The report document for ``metrics`` with ``plots`` grouped by section name."""
    doc = Doc()
    doc.h(1, "hep-tokenizers evaluation report")
    toks = ", ".join(f"`{k}` ({v['path']})" for k, v in metrics["tokenizers"].items())
    doc.p(f"Tokenizers: {toks}.")
    files = ", ".join(f"`{f}`" for f in metrics["files"])
    doc.p(f"Files: {files}; {metrics['n_events']} events; max_length {metrics['max_length']}.")
    doc.p("Command:")
    doc.code(metrics.get("command", ""))
    sections = [("headline", _headline), ("bias", _bias_table), ("pt", _pt_bins), ("classification", _classification),
                ("physics", _physics), ("codebooks", _codebooks), ("sequences", _sequences)]
    for key, fn in sections:
        fn(doc, metrics)
        for p in plots.get(key, []):
            doc.img(p, Path(p).stem)
    return doc


def write_report(metrics: dict[str, Any], out_dir: Path, plots: dict[str, list[str]], html_page: bool = True) -> dict[str, Path]:
    """Write ``metrics.json``, ``report.md`` and (optionally) ``report.html`` into ``out_dir``.

    ``plots`` maps a section (``headline``, ``bias``, ``pt``, ``classification``, ``physics``,
    ``codebooks``, ``sequences``) to PNG paths relative to ``out_dir``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"metrics": out_dir / "metrics.json", "markdown": out_dir / "report.md"}
    paths["metrics"].write_text(json.dumps(jsonable(metrics), indent=1, allow_nan=False))
    doc = build_doc(jsonable(metrics), plots)
    paths["markdown"].write_text(doc.markdown())
    if html_page:
        paths["html"] = out_dir / "report.html"
        paths["html"].write_text(doc.html(out_dir, "hep-tokenizers evaluation report"))
    return paths


__all__ = ["BIAS_FLAG", "Doc", "build_doc", "fmt", "write_report"]
