"""Are memq's summaries worth reading? The summarization evaluation of issue 10.

    .venv/bin/python -m bench.summary_eval            # the committed run (see the results file)
    .venv/bin/python -m bench.summary_eval --quick    # 6 texts, 2 settings + the defaults

On the texts of `bench/summary_data/` (news, reports, meeting notes, technical documents,
a story, reviews... 300-2,500 tokens, six of them longer than one call's room at a 2,048
context, so map-reduced), each with a reference summary written by hand: summarize jobs run
through a live stack (redis-server, memory service, Celery worker, gateway; jobs submitted
over HTTP) serving the offline instruct model with `MEMQ_CONTEXT_WINDOW=2048`, once per
candidate decoding setting (greedy). Per setting: ROUGE-L F-measure (`rouge-score`,
stemming on) against the references, its ratio to the lead-3 baseline (the text's first
three sentences) on the same texts, the share of degenerate outputs (`degenerate`), and
seconds per 1,000 input tokens (all texts of a setting submitted at once: wall time over
the texts' tokens). Then the jobs' defaults (no `params`), GPT-2-style `TL;DR:` prompting
of the same model (`MEMQ_PROMPT_STYLE=plain`), and the summary of docs/decisions.md that
issue 10 complained about. Writes bench/results/summaries.md, .json and .png.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from bench._harness import RESULTS, load_average, machine, subplots, table, write_result

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DATA = Path(__file__).parent / "summary_data"
CONTEXT_WINDOW = 2048
LOOP_NGRAM = 4
LOOP_REPEATS = 3
LOOP_SHARE = 0.5
ONE_TOKEN_SHARE = 0.5
JOB_TIMEOUT_S = 3600.0
SETTINGS = "1.0:0,1.0:5,1.0:3o,1.0:4o"
QUICK_SETTINGS = "1.0:0,1.0:5,1.0:4o"


@dataclass(frozen=True)
class Text:
    id: str
    kind: str
    title: str
    text: str
    tokens: int  # SmolLM2's tokenizer, as stored in summaries.json
    reference: str


def load_texts(data: Path = DATA) -> list[Text]:
    items = json.loads((data / "summaries.json").read_text())
    return [
        Text(
            id=i["id"],
            kind=i["kind"],
            title=i["title"],
            text=(data / i["file"]).read_text().strip(),
            tokens=i["tokens"],
            reference=i["reference"],
        )
        for i in items
    ]


_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")


def sentences(text: str) -> list[str]:
    """Sentences of `text`: paragraphs (blank-line separated) split after . ! ? when the
    next word starts with a capital or a digit."""
    out: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text.strip()):
        flat = " ".join(paragraph.split())
        out += [s for s in _SENTENCE_END.split(flat) if s]
    return out


def lead(text: str, n: int = 3) -> str:
    """The lead-n baseline: the text's first n sentences."""
    return " ".join(sentences(text)[:n])


def _tokens(text: str) -> list[str]:
    # Words (letters and digits; `_` splits, so `JOB_JOB_JOB` is three tokens) and each
    # punctuation mark on its own, lower-cased.
    return [t.lower() for t in re.findall(r"[^\W_]+|[^\w\s]|_", text)]


def degenerate(text: str) -> str | None:
    """Why an output is degenerate, or None when it is not.

    Tokens: words (letters and digits) and punctuation marks, lower-cased. Degenerate:
    - empty: no word at all;
    - a loop: some LOOP_NGRAM words in a row occur LOOP_REPEATS or more times;
    - a counting loop: the same with every number read as `#`, when those occurrences
      make up at least LOOP_SHARE of the words ("14 March, 2022, 18 March, 2019, ..."; a
      few amounts in "N million dollars" stay well below that share);
    - mostly one token: one token is more than ONE_TOKEN_SHARE of 8 or more tokens.
    """
    tokens = _tokens(text)
    words = [t for t in tokens if t[0].isalnum()]
    if not words:
        return "empty"
    gram, count = _most_common_ngram(words)
    if count >= LOOP_REPEATS:
        return f"loop: {' '.join(gram)!r} x{count}"
    gram, count = _most_common_ngram(["#" if w.isdigit() else w for w in words])
    if count >= LOOP_REPEATS and count * LOOP_NGRAM >= LOOP_SHARE * len(words):
        return f"counting loop: {' '.join(gram)!r} x{count}"
    if len(tokens) >= 8:
        token, count = Counter(tokens).most_common(1)[0]
        if count > ONE_TOKEN_SHARE * len(tokens):
            return f"one token: {token!r} is {count} of {len(tokens)}"
    return None


def _most_common_ngram(tokens: list[str]) -> tuple[tuple[str, ...], int]:
    grams = Counter(tuple(tokens[i : i + LOOP_NGRAM]) for i in range(len(tokens) - LOOP_NGRAM + 1))
    return grams.most_common(1)[0] if grams else ((), 0)


def rouge_l(outputs: list[str], references: list[str]) -> list[float]:
    """ROUGE-L F-measure of each output against its reference (Porter stemming)."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return [
        scorer.score(ref, out)["rougeL"].fmeasure
        for out, ref in zip(outputs, references, strict=True)
    ]


@dataclass(frozen=True)
class Setting:
    """A decoding setting; `params=None` submits jobs without `params` (the defaults)."""

    name: str
    params: dict[str, Any] | None


@dataclass
class Run:
    setting: str
    prompts: str  # "chat template" or "plain (TL;DR:)"
    outputs: list[str]
    finish: list[str]
    chunks: list[int]
    applied: dict[str, Any]  # the params the jobs ran with (from their results)
    wall_s: float
    rouge: list[float] = field(default_factory=list)
    degenerate: list[str | None] = field(default_factory=list)

    def score(self, references: list[str]) -> None:
        self.rouge = rouge_l(self.outputs, references)
        self.degenerate = [degenerate(o) for o in self.outputs]

    @property
    def mean_rouge(self) -> float:
        return statistics.mean(self.rouge)

    @property
    def degenerate_share(self) -> float:
        return sum(d is not None for d in self.degenerate) / len(self.degenerate)

    def ran_with(self, params: dict[str, Any]) -> bool:
        return all(self.applied.get(k) == v for k, v in params.items())


def summarize(http: httpx.Client, text: str, params: dict[str, Any] | None) -> dict[str, Any]:
    """Submit one summarize job and wait for it; its result."""
    body: dict[str, Any] = {"type": "summarize", "text": text}
    if params is not None:
        body["params"] = params
    resp = http.post("/v1/jobs", json=body)
    resp.raise_for_status()
    job_id = resp.json()["id"]
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while time.monotonic() < deadline:
        job = http.get(f"/v1/jobs/{job_id}").json()
        if job["status"] == "succeeded":
            return dict(job["result"])
        if job["status"] in ("failed", "cancelled"):
            raise RuntimeError(f"summarize job {job_id} {job['status']}: {job.get('error')}")
        time.sleep(1.0)
    raise TimeoutError(f"summarize job {job_id} did not finish in {JOB_TIMEOUT_S:.0f} s")


def run_setting(gateway_url: str, texts: list[Text], setting: Setting, prompts: str) -> Run:
    """Every text's summary under one setting, all submitted at once (the batched engine
    decodes them together, the map calls of long texts included)."""
    started = time.monotonic()
    with (
        httpx.Client(base_url=gateway_url, timeout=60) as http,
        ThreadPoolExecutor(len(texts)) as pool,
    ):
        results = list(pool.map(lambda t: summarize(http, t.text, setting.params), texts))
    run = Run(
        setting=setting.name,
        prompts=prompts,
        outputs=[r["text"] for r in results],
        finish=[r["finish_reason"] for r in results],
        chunks=[r.get("chunks") or 1 for r in results],
        applied=dict(results[0]["params"]),
        wall_s=time.monotonic() - started,
    )
    run.score([t.reference for t in texts])
    return run


def grid(spec: str, default: dict[str, Any]) -> list[Setting]:
    """Greedy settings from "penalty:ngram,..." with 96 new tokens (an "o" after the n-gram
    size: scope `output`, the bans cover only the generated tokens); the one equal to the
    summarize defaults is submitted without params, so it measures the defaults."""
    settings = []
    for item in spec.split(","):
        penalty, ngram = item.split(":")
        scope = "output" if ngram.endswith("o") else "all"
        params = {
            "max_new_tokens": 96,
            "repetition_penalty": float(penalty),
            "no_repeat_ngram_size": int(ngram.removesuffix("o")),
            "no_repeat_ngram_scope": scope,
        }
        is_default = all(default.get(k) == v for k, v in params.items())
        size = params["no_repeat_ngram_size"]
        name = f"repetition_penalty {float(penalty):g}, no_repeat_ngram {size}"
        if scope == "output" and size:
            name += " (output only)"
        settings.append(Setting(name, None if is_default else params))
    return settings


def summary_defaults() -> dict[str, Any]:
    from memq.contracts import SummarizeJobRequest

    params = SummarizeJobRequest(text="x").params
    return {
        "max_new_tokens": params.max_new_tokens,
        "repetition_penalty": params.repetition_penalty,
        "no_repeat_ngram_size": params.no_repeat_ngram_size,
        "no_repeat_ngram_scope": params.no_repeat_ngram_scope,
    }


def _stack(root: Path, name: str, model_dir: Path, extra: dict[str, str]) -> Any:
    from memq.ops.launcher import start_stack

    env = {
        "MEMQ_MODEL": str(model_dir),
        "MEMQ_CONTEXT_WINDOW": str(CONTEXT_WINDOW),
        "MEMQ_LOG_LEVEL": "WARNING",
        "HF_HUB_OFFLINE": "1",
        **extra,
    }
    return start_stack(root / name, env=env)


def _row(run: Run, lead_rouge: float, tokens: int, chosen: bool) -> dict[str, Any]:
    return {
        "setting": run.setting,
        "prompts": run.prompts,
        "applied": run.applied,
        "rouge_l": run.mean_rouge,
        "ratio_to_lead3": run.mean_rouge / lead_rouge,
        "degenerate_share": run.degenerate_share,
        "s_per_1k_tokens": run.wall_s / tokens * 1000,
        "wall_s": run.wall_s,
        "chosen": chosen,
        "per_text": [
            {"rouge_l": r, "degenerate": d, "finish": f, "chunks": c, "output": o}
            for r, d, f, c, o in zip(
                run.rouge, run.degenerate, run.finish, run.chunks, run.outputs, strict=True
            )
        ],
    }


def write_report(data: dict[str, Any], out: Path) -> None:
    rows = data["rows"]
    lead3 = data["lead3_rouge_l"]
    chosen = next(r for r in rows if r["chosen"])
    decisions = data["decisions"]
    lines = [
        "# Summaries (issue 10)",
        "",
        f"Model: {data['model']} behind a live stack (jobs over HTTP), "
        f"`MEMQ_CONTEXT_WINDOW={CONTEXT_WINDOW}`, greedy decoding, 96 new tokens, 3 sentences "
        f"asked. {len(data['texts'])} texts written for this evaluation "
        f"(bench/summary_data/: {data['kinds']}), {data['min_tokens']:,}-{data['max_tokens']:,} "
        f"tokens, {data['total_tokens']:,} in all; {data['map_reduced']} of them are longer "
        "than one call's room and are map-reduced. Each has a reference summary of 2-4 "
        "sentences written by hand.",
        "",
        f"Command: `{data['command']}`; wall {data['wall_s'] / 60:.0f} min; load average "
        f"(1, 5, 15 min) at the start {data['load_start']}, at the end {data['load_end']} "
        "on this 2-core machine shared with other work.",
        "",
        "- ROUGE-L: F-measure of `rouge-score` with stemming, mean over the texts; lead-3 "
        f"(the text's first three sentences) scores **{lead3:.3f}** on the same texts, so the "
        f"target 0.8 x lead-3 is {0.8 * lead3:.3f}.",
        "- Degenerate: empty; a loop (some 4 words in a row 3 or more times); a counting loop "
        "(the same with numbers read as one symbol, covering half the output or more); or "
        "mostly one token (`bench.summary_eval.degenerate`, unit-tested in "
        "tests/bench/test_summary_eval.py).",
        "- s / 1k tokens: the texts of a setting are submitted at once; wall time until the "
        "last finished, per 1,000 tokens of text (throughput on this machine, not latency).",
        "",
        *table(
            ["prompts", "setting", "ROUGE-L", "/ lead-3", "degenerate", "s / 1k tokens"],
            [
                ["(lead-3 baseline)", "first three sentences", f"{lead3:.3f}", "1.00", "0 %", "-"],
                *(
                    [
                        r["prompts"],
                        r["setting"] + (" **(default)**" if r["chosen"] else ""),
                        f"{r['rouge_l']:.3f}",
                        f"{r['ratio_to_lead3']:.2f}",
                        f"{r['degenerate_share']:.0%}",
                        f"{r['s_per_1k_tokens']:.1f}",
                    ]
                    for r in rows
                ),
            ],
        ),
    ]
    lines += ["", data["conclusion"], "", "## The default, text by text", ""]
    lines += table(
        ["text", "tokens", "chunks", "ROUGE-L", "lead-3", "degenerate"],
        (
            [
                f"{t['id']} ({t['kind']})",
                f"{t['tokens']:,}",
                p["chunks"],
                f"{p['rouge_l']:.3f}",
                f"{lr:.3f}",
                p["degenerate"] or "no",
            ]
            for t, p, lr in zip(
                data["texts"], chosen["per_text"], data["lead3_per_text"], strict=True
            )
        ),
    )
    lines += ["", "## Degenerate outputs", ""]
    found = False
    for r in rows:
        for t, p in zip(data["texts"], r["per_text"], strict=True):
            if p["degenerate"]:
                found = True
                lines.append(f"- {r['prompts']}, {r['setting']}, {t['id']}: {p['degenerate']}")
    if not found:
        lines.append("None.")
    lines += ["", "## Examples (the default)", ""]
    for t, p in list(zip(data["texts"], chosen["per_text"], strict=True))[: data["examples"]]:
        lines += [f"**{t['id']}** — reference: {t['reference']}", "", _quote(p["output"]), ""]
    lines += [
        "## Issue 10's complaint, again",
        "",
        "`memq summarize docs/decisions.md` with the offline model and default settings "
        "returned `- **Memq_JOB_JOB_JOB_JOB_…` for all 96 tokens. Now "
        f"({decisions['tokens']:,} tokens of text, {decisions['completion_tokens']} generated, "
        f"finish `{decisions['finish_reason']}`):",
        "",
        _quote(decisions["text"]),
        "",
    ]
    figure = _plot(rows, lead3)
    write_result(
        out / "summaries", lines, machine=data.get("machine"), data=data, figure=figure, dpi=120
    )


def _quote(text: str) -> str:
    return "\n".join(f"> {line}" if line.strip() else ">" for line in text.splitlines())


def _plot(rows: list[dict[str, Any]], lead3: float) -> Figure:
    names = [f"{'plain: ' if r['prompts'].startswith('plain') else ''}{r['setting']}" for r in rows]
    names = [
        n.replace("repetition_penalty ", "rp ").replace("no_repeat_ngram ", "ngram ") for n in names
    ]
    fig, (a, b) = subplots(1, 2, figsize=(12, 0.4 * len(rows) + 1.5), sharey=True)
    colors = ["tab:green" if r["chosen"] else "tab:blue" for r in rows]
    a.barh(names, [r["rouge_l"] for r in rows], color=colors)
    a.axvline(lead3, color="black", linestyle="--", label=f"lead-3 {lead3:.3f}")
    a.axvline(0.8 * lead3, color="grey", linestyle=":", label="0.8 x lead-3")
    a.set_xlabel("ROUGE-L F (mean)")
    a.legend(loc="lower right")
    a.invert_yaxis()
    b.barh(names, [100 * r["degenerate_share"] for r in rows], color=colors)
    b.set_xlabel("degenerate outputs (%)")
    b.set_xlim(0, 100)
    fig.suptitle("memq summaries: SmolLM2-135M-Instruct, context 2,048 (green: the default)")
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="6 texts, 2 settings + the defaults, no plain"
    )
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--settings",
        default=None,
        help="repetition_penalty:no_repeat_ngram_size pairs, comma-separated (an 'o' after "
        f"the size: output-only bans); default {SETTINGS} ({QUICK_SETTINGS} with --quick)",
    )
    parser.add_argument(
        "--torch-threads", type=int, default=None, help="MEMQ_TORCH_THREADS of the worker"
    )
    args = parser.parse_args()
    started = time.monotonic()
    load_start = load_average()
    texts = load_texts()
    if args.quick:
        texts = [*[t for t in texts if t.tokens < 600][:5], max(texts, key=lambda t: t.tokens)]
    defaults = summary_defaults()
    spec = args.settings or (QUICK_SETTINGS if args.quick else SETTINGS)
    settings = grid(spec, defaults)
    if not any(s.params is None for s in settings):
        settings.append(Setting("the summarize defaults", None))
    if args.model_dir is None:
        from worker.model_loader import prepare_fallback_model

        args.model_dir = prepare_fallback_model(Path(".memq").resolve())
    extra = {"MEMQ_TORCH_THREADS": str(args.torch_threads)} if args.torch_threads else {}
    references = [t.reference for t in texts]
    lead3_per_text = rouge_l([lead(t.text) for t in texts], references)
    lead3 = statistics.mean(lead3_per_text)
    tokens = sum(t.tokens for t in texts)
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="memq-summaries-") as tmp:
        root = Path(tmp)
        stack = _stack(root, "template", args.model_dir, extra)
        try:
            model = stack.model or str(args.model_dir)
            for setting in settings:
                runs.append(run_setting(stack.gateway_url, texts, setting, "chat template"))
                _progress(runs[-1], lead3, tokens)
            with httpx.Client(base_url=stack.gateway_url, timeout=60) as http:
                decisions_text = Path("docs/decisions.md").read_text()
                decisions = summarize(http, decisions_text, None)
        finally:
            stack.stop()
        if not args.quick:
            plain = _stack(root, "plain", args.model_dir, {**extra, "MEMQ_PROMPT_STYLE": "plain"})
            try:
                for setting in settings:
                    if setting.params is None:
                        runs.append(
                            run_setting(plain.gateway_url, texts, setting, "plain (TL;DR:)")
                        )
                        _progress(runs[-1], lead3, tokens)
            finally:
                plain.stop()
    default_run = next(r for r in runs if r.prompts == "chat template" and r.ran_with(defaults))
    rows = [_row(r, lead3, tokens, r is default_run) for r in runs]
    data = {
        "model": model,
        "command": "python -m bench.summary_eval" + (" --quick" if args.quick else ""),
        "texts": [
            {"id": t.id, "kind": t.kind, "tokens": t.tokens, "reference": t.reference}
            for t in texts
        ],
        "kinds": ", ".join(sorted({t.kind for t in texts})),
        "min_tokens": min(t.tokens for t in texts),
        "max_tokens": max(t.tokens for t in texts),
        "total_tokens": tokens,
        "map_reduced": sum(c > 1 for c in default_run.chunks),
        "lead3_rouge_l": lead3,
        "lead3_per_text": lead3_per_text,
        "defaults": defaults,
        "rows": rows,
        "decisions": {
            "text": decisions["text"],
            "finish_reason": decisions["finish_reason"],
            "completion_tokens": decisions["usage"]["completion_tokens"],
            "tokens": decisions["usage"]["prompt_tokens"],
        },
        "examples": 4,
        "conclusion": "",
        "wall_s": time.monotonic() - started,
        "load_start": load_start,
        "load_end": load_average(),
        "machine": machine(),
    }
    data["conclusion"] = conclusion(data)
    write_report(data, args.out)
    print(f"wrote {args.out / 'summaries.md'}")


def conclusion(data: dict[str, Any]) -> str:
    """The verdict on the targets (0 degenerate outputs, ROUGE-L >= 0.8 x lead-3)."""
    rows = data["rows"]
    chosen = next(r for r in rows if r["chosen"])
    template = [r for r in rows if r["prompts"] == "chat template"]
    clean = [r for r in template if r["degenerate_share"] == 0]
    best = max(clean or template, key=lambda r: r["rouge_l"])
    met = chosen["degenerate_share"] == 0 and chosen["ratio_to_lead3"] >= 0.8
    verdict = (
        f"The default ({chosen['setting']}) meets both targets: "
        if met
        else f"The default ({chosen['setting']}) misses a target: "
    )
    verdict += (
        f"{chosen['degenerate_share']:.0%} degenerate outputs, ROUGE-L "
        f"{chosen['ratio_to_lead3']:.2f} x lead-3. Best setting without degenerate outputs: "
        f"{best['setting']} ({best['ratio_to_lead3']:.2f} x lead-3)."
    )
    plain = [r for r in rows if r["prompts"] != "chat template"]
    if plain:
        verdict += (
            f" `TL;DR:` prompting of the same model with the same setting: ROUGE-L "
            f"{plain[0]['ratio_to_lead3']:.2f} x lead-3, {plain[0]['degenerate_share']:.0%} "
            "degenerate."
        )
    return verdict


def _progress(run: Run, lead3: float, tokens: int) -> None:
    print(
        f"{run.prompts}, {run.setting}: ROUGE-L {run.mean_rouge:.3f} "
        f"({run.mean_rouge / lead3:.2f} x lead-3), degenerate {run.degenerate_share:.0%}, "
        f"{run.wall_s / tokens * 1000:.1f} s / 1k tokens",
        flush=True,
    )


if __name__ == "__main__":
    main()
