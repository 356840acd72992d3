"""fp32 vs bf16 vs int8: what each dtype costs in output agreement and buys in tokens/s.

Everything runs in process on SmolLM2-135M-Instruct (real weights; the worker's offline
fallback, `worker.model_loader.prepare_fallback_model`), through the batched engine:

- agreement: greedy answers (48 new tokens) to 12 fixed chat prompts, submitted together
  from 12 threads; share of prompts whose answer is identical to fp32's and where the
  others first differ. For the int8 modes also a few prompts run alone: a greedy answer
  should not depend on what else is in the batch (fp32 guarantees that, tests prove it);
- perplexity of a fixed neutral text (~600 tokens, below) and how often each mode's
  next-token argmax matches fp32's along it (teacher-forced);
- tokens/s at N = 1 and N = 16 closed-loop clients (`bench.engine_bench.run_closed_loop`),
  jobs of exactly `--speed-tokens` tokens (EOS ignored), modes interleaved in each round
  (order rotated), ratios vs fp32 of the same round.

Two int8 modes, both on every `nn.Linear` (lm_head included; embeddings and norms stay
fp32), int8 weights with one scale per output channel:

- `int8`: weight-only (`Int8WeightLinear`: torch's `_weight_int8pack_mm`, activations
  rounded to bf16 for the kernel);
- `int8-dynamic`: `torch.ao.quantization.quantize_dynamic`, which also quantizes the
  activations to int8 per call, with one scale for the whole input tensor (the batch).

    nice -n 10 .venv/bin/python -m bench.dtype_eval --threads 1 \
        --model-dir /work/models/smollm2-135m-instruct   # ~15 min on 2 busy cores

Writes bench/results/dtypes.{md,json,png}.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from bench._harness import RESULTS, load_average, machine, subplots, table, write_result
from bench.engine_bench import RunStats, run_closed_loop
from memq.contracts import GenerationParams
from worker.config import WorkerSettings
from worker.engine.base import GenerationRequest
from worker.engine.batched import BatchedEngine
from worker.model_loader import LoadedModel, cpu_has_fast_bf16, load_model

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SYSTEM = "You are a helpful assistant."
PROMPTS = [
    "What is the capital of France?",
    "Explain in two sentences why the sky is blue.",
    "Write a short poem about the sea.",
    "Give me three tips for sleeping better.",
    "What is the difference between a virus and a bacterium?",
    "Tell me a short story about a wizard who lost his hat.",
    "How do I make a cup of tea?",
    "Summarize the plot of Romeo and Juliet in a few sentences.",
    "What are the benefits of regular exercise?",
    "Translate 'good morning, how are you?' into Spanish.",
    "Why do leaves change colour in autumn?",
    "List four planets of the solar system and one fact about each.",
]
TEXT = """\
The history of bread is nearly as old as the history of farming. When people in the \
Fertile Crescent began to grow wheat and barley more than ten thousand years ago, they \
soon learned to grind the grain between stones and mix the flour with water. The first \
breads were flat, baked on hot stones or in the ashes of a fire. Leavened bread came \
later, perhaps by accident, when a dough left in the warm air was colonised by wild \
yeasts and rose before it was baked. The Egyptians made leavened bread on a large scale, \
and bakeries with rows of clay ovens have been found near the pyramids, where they fed the \
workers who built them.

A modern bakery follows the same steps, only with more control. Flour, water, salt and \
yeast are mixed and kneaded until the gluten proteins in the wheat form a network that \
can hold gas. The dough then rests while the yeast feeds on sugars and releases carbon \
dioxide and a little alcohol. During this time the flavour develops as well: a slow, cool \
fermentation gives a richer taste than a fast, warm one. The baker divides and shapes the \
dough, lets it rise a second time and bakes it in a hot oven. In the first minutes the gas \
expands quickly and the loaf grows, then the crust sets, browns and gives off the smell \
that fills the street in the early morning.

Rivers shape the land they cross in a similar slow and patient way. Water that falls as \
rain on high ground gathers in small streams, which join to form larger ones. Fast water \
in the mountains carries sand and stones and cuts deep valleys into the rock. When the \
river reaches flatter ground it slows down, drops part of its load and begins to wind \
from side to side. Over centuries these bends move across the valley floor, leaving old \
channels behind as lakes shaped like a crescent moon. Near the sea the river spreads out \
further and builds a delta of fine mud, where many birds and fish find food and shelter.

People have always settled along rivers. A river gives water for drinking and for fields, \
fish to eat and an easy road for boats. Many of the great cities of the world stand on \
the banks of a river, often at the first place upstream where it could be crossed by a \
bridge. The same river can also be dangerous. Heavy rain or melting snow can make it rise \
over its banks, and towns have built walls, dams and wide meadows that are allowed to \
flood, so that the water has somewhere to go.

Libraries are a third kind of slow work. A librarian chooses books, describes them so \
that readers can find them and keeps them in good condition for the next generation. In \
the past every entry was written by hand on a small card, and the cards were kept in long \
wooden drawers sorted by author, title and subject. Today the catalogue lives in a \
computer, but the questions are the same: what is this book about, who will want to read \
it, and where should it stand on the shelf? A good library is quiet, warm and open to \
everyone, and many people remember the first one they visited as a child.
"""
MODES = ["float32", "bfloat16", "int8", "int8-dynamic"]


class Int8WeightLinear(torch.nn.Module):
    """Weight-only int8: the weight as int8 with one scale per output channel, multiplied
    by torch's int8 weight-packed kernel (`_weight_int8pack_mm`, the one torchao and
    gpt-fast use). The kernel is fast on this CPU for bf16 activations only, so inputs are
    rounded to bf16 on the way in and the output goes back to the model's dtype."""

    weight: torch.Tensor
    scale: torch.Tensor

    def __init__(self, linear: torch.nn.Linear) -> None:
        super().__init__()
        weight = linear.weight.detach().float()
        scale = weight.abs().amax(dim=1).clamp(min=1e-12) / 127
        self.register_buffer("weight", torch.round(weight / scale[:, None]).to(torch.int8))
        self.register_buffer("scale", scale.to(torch.bfloat16))
        self.bias = linear.bias
        self.out_features = linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1]).to(torch.bfloat16)
        y = torch._weight_int8pack_mm(flat, self.weight, self.scale).to(x.dtype)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)


def quantize_int8(model: Any) -> Any:
    """Every nn.Linear (lm_head included) as an `Int8WeightLinear`."""
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, torch.nn.Linear):
                setattr(module, name, Int8WeightLinear(child))
    return model


def quantize_dynamic_int8(model: Any) -> Any:
    """torch's dynamic quantization: int8 weights (per output channel) and activations
    quantized to int8 per call, one scale for the whole input tensor."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notices
        spec = {torch.nn.Linear: per_channel_dynamic_qconfig}
        return quantize_dynamic(model, spec, dtype=torch.qint8, inplace=True)  # type: ignore[no-untyped-call]


def load_mode(model_dir: Path, mode: str) -> LoadedModel:
    dtype = "bfloat16" if mode == "bfloat16" else "float32"
    lm = load_model(str(model_dir), explicit=True, data_dir=model_dir.parent, dtype=dtype)
    if mode == "int8":
        quantize_int8(lm.model)
    elif mode == "int8-dynamic":
        quantize_dynamic_int8(lm.model)
    return lm


def weight_megabytes(model: Any) -> float:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.save(model.state_dict(), buffer)
    return buffer.tell() / 2**20


def engine_for(lm: LoadedModel) -> BatchedEngine:
    knobs = WorkerSettings(service_token="bench")  # type: ignore[arg-type]
    return BatchedEngine(
        lm,
        max_batch_size=knobs.max_batch_size,
        max_batch_tokens=knobs.max_batch_tokens,
        max_prefill_tokens=knobs.max_prefill_tokens,
        prefill_chunk_tokens=knobs.prefill_chunk_tokens,
    )


def chat_ids(tokenizer: Any, question: str) -> list[int]:
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids: list[int] = tokenizer.encode(text, add_special_tokens=False)
    return ids


def greedy(engine: BatchedEngine, prompts: Sequence[list[int]], new_tokens: int) -> list[list[int]]:
    """Greedy answers; all prompts submitted at once (they share batches)."""
    params = GenerationParams(max_new_tokens=new_tokens, stop=[])
    out: list[list[int]] = [[] for _ in prompts]

    def one(i: int) -> None:
        out[i] = engine.generate(GenerationRequest(list(prompts[i]), params)).token_ids

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def first_divergence(a: list[int], b: list[int]) -> int | None:
    """Index of the first differing token; None when identical."""
    if a == b:
        return None
    return next(
        (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
    )


@dataclass
class Quality:
    mode: str
    weights_mb: float
    identical: int
    prompts: int
    divergence: list[int | None]
    perplexity: float
    top1_match: float  # teacher-forced argmax equal to fp32's, share of positions
    mean_kl: float  # KL(fp32 || mode) per position, nats
    alone_identical: int | None = None  # int8: prompts run alone = the same prompt in a batch
    alone_prompts: int | None = None
    seconds: float = 0.0
    samples: list[str] = field(default_factory=list)


def text_logits(lm: LoadedModel, ids: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        logits: torch.Tensor = lm.model(ids).logits[0, :-1].float()
    return logits


def perplexity(logits: torch.Tensor, ids: torch.Tensor) -> float:
    loss = torch.nn.functional.cross_entropy(logits, ids[0, 1:])
    return float(torch.exp(loss))


def evaluate_quality(
    mode: str,
    lm: LoadedModel,
    prompts: list[list[int]],
    text_ids: torch.Tensor,
    reference: tuple[list[list[int]], torch.Tensor] | None,
    new_tokens: int,
    alone: int,
) -> tuple[Quality, list[list[int]], torch.Tensor]:
    started = time.monotonic()
    logits = text_logits(lm, text_ids)
    engine = engine_for(lm)
    try:
        answers = greedy(engine, prompts, new_tokens)
        alone_same = None
        if alone and reference is not None:
            solo = [greedy(engine, [p], new_tokens)[0] for p in prompts[:alone]]
            alone_same = sum(s == a for s, a in zip(solo, answers, strict=False))
    finally:
        engine.close()
    ref_answers, ref_logits = reference if reference is not None else (answers, logits)
    divergence = [first_divergence(r, a) for r, a in zip(ref_answers, answers, strict=True)]
    log_p = torch.log_softmax(ref_logits, -1)
    kl = (log_p.exp() * (log_p - torch.log_softmax(logits, -1))).sum(-1).mean()
    quality = Quality(
        mode=mode,
        weights_mb=weight_megabytes(lm.model),
        identical=sum(d is None for d in divergence),
        prompts=len(prompts),
        divergence=divergence,
        perplexity=perplexity(logits, text_ids),
        top1_match=float((logits.argmax(-1) == ref_logits.argmax(-1)).float().mean()),
        mean_kl=float(kl),
        alone_identical=alone_same,
        alone_prompts=alone if alone_same is not None else None,
        seconds=time.monotonic() - started,
        samples=[lm.tokenizer.decode(a, skip_special_tokens=True) for a in answers[:3]],
    )
    return quality, answers, logits


def speed_model(lm: LoadedModel) -> LoadedModel:
    """The same model with no EOS: every job runs its full length."""
    return LoadedModel(lm.name, lm.model, lm.tokenizer, lm.context_window, eos_token_id=None)


def mean_divergence(q: Quality) -> float | None:
    values = [d for d in q.divergence if d is not None]
    return statistics.mean(values) if values else None


def speed_ratios(runs: list[dict[str, Any]], mode: str, clients: int) -> list[float]:
    ratios = []
    for r in runs:
        if r["mode"] != mode or r["clients"] != clients:
            continue
        base = next(
            b
            for b in runs
            if b["mode"] == "float32" and b["clients"] == clients and b["round"] == r["round"]
        )
        ratios.append(r["tokens_per_s"] / base["tokens_per_s"])
    return ratios


def report(quality: list[Quality], runs: list[dict[str, Any]], meta: dict[str, Any]) -> list[str]:
    fp32 = next(q for q in quality if q.mode == "float32")
    lines = [
        "# dtypes: fp32 vs bf16 vs int8",
        "",
        f"SmolLM2-135M-Instruct (real weights), in process, batched engine; torch "
        f"{meta['torch']} on {meta['cpu']} ({meta['cores']} cores, torch threads "
        f"{meta['threads']}); load average {meta['load_start']} at the start, "
        f"{meta['load_end']} at the end (other work shared the cores). `{meta['command']}`, "
        f"{meta['wall_s']:.0f} s.",
        "",
        "## Speed (tokens/s, batched engine, closed-loop clients)",
        "",
        f"Jobs of {meta['speed_tokens']} new tokens (EOS ignored) on the 12 chat prompts; per "
        f"cell at least {meta['min_seconds']:.0f} s measured; {meta['rounds']} rounds, modes "
        "interleaved, order rotated each round. Ratio: median over rounds of the mode's "
        "tokens/s ÷ fp32's in the same round.",
        "",
    ]
    speed_rows = []
    for mode in MODES:
        for n in meta["clients"]:
            rs = [r for r in runs if r["mode"] == mode and r["clients"] == n]
            speed_rows.append(
                [
                    mode,
                    n,
                    ", ".join(f"{r['tokens_per_s']:.1f}" for r in rs),
                    f"{statistics.median(speed_ratios(runs, mode, n)):.2f}×",
                    ", ".join(f"{r['load']:.1f}" for r in rs),
                ]
            )
    lines += table(
        ["mode", "N", "tokens/s per round", "median ratio vs fp32", "load (1 min) per round"],
        speed_rows,
        "lrlrl",
    )
    lines += [
        "",
        "## Agreement with fp32",
        "",
        f"Greedy, {meta['new_tokens']} new tokens, {fp32.prompts} chat prompts submitted "
        "together (they share batches). Divergence: token index where an answer first "
        "differs from fp32's. Perplexity and top-1 match: the fixed text in "
        f"bench/dtype_eval.py ({meta['text_tokens']} tokens), teacher-forced; KL(fp32 ‖ mode) "
        "per position in nats. Alone = batched: prompts run one at a time give the same "
        "answer as in the batch.",
        "",
    ]
    agreement = []
    for q in quality:
        md = mean_divergence(q)
        agreement.append(
            [
                *(q.mode, f"{q.weights_mb:.0f}", f"{q.identical} of {q.prompts}"),
                "–" if md is None else f"{md:.1f}",
                ", ".join(str(d) for d in q.divergence if d is not None) or "–",
                f"{q.perplexity:.3f}",
                f"{(q.perplexity / fp32.perplexity - 1):+.2%}",
                *(f"{q.top1_match:.1%}", f"{q.mean_kl:.4f}"),
                f"{q.alone_identical} of {q.alone_prompts}" if q.alone_prompts else "–",
            ]
        )
    lines += table(
        [
            *("mode", "weights MB", "identical answers", "mean first divergence"),
            *("divergences", "perplexity", "Δ perplexity", "top-1 match", "KL"),
            "alone = batched",
        ],
        agreement,
        "lrrrlrrrrr",
    )
    lines += ["", "## First answers", ""]
    for q in quality:
        lines.append(f"- **{q.mode}**: " + " / ".join(repr(s[:90]) for s in q.samples))
    return lines


def plot(quality: list[Quality], runs: list[dict[str, Any]], clients: list[int]) -> Figure:
    fig, (ax_s, ax_q) = subplots(1, 2, figsize=(11, 4.2))
    width = 0.8 / len(clients)
    for k, n in enumerate(clients):
        xs = [i + k * width for i in range(len(MODES))]
        medians = [statistics.median(speed_ratios(runs, m, n)) for m in MODES]
        ax_s.bar(xs, medians, width, label=f"N = {n}")
        for i, m in enumerate(MODES):
            ax_s.scatter(
                [xs[i]] * len(speed_ratios(runs, m, n)), speed_ratios(runs, m, n), color="k", s=8
            )
    ax_s.axhline(1.0, color="grey", lw=0.8)
    ax_s.set_xticks([i + width * (len(clients) - 1) / 2 for i in range(len(MODES))], MODES)
    ax_s.set_ylabel("tokens/s ÷ fp32 (dots: rounds)")
    ax_s.set_title("Speed, batched engine")
    ax_s.legend()
    names = [q.mode for q in quality]
    xs = list(range(len(quality)))
    ax_q.bar(
        [x - 0.2 for x in xs],
        [q.identical / q.prompts for q in quality],
        0.4,
        label="identical greedy answers",
    )
    ax_q.bar(
        [x + 0.2 for x in xs],
        [q.top1_match for q in quality],
        0.4,
        label="teacher-forced top-1 match",
    )
    ax_q.set_xticks(xs, names)
    ax_q.set_ylim(0, 1.3)
    ax_q.set_title("Agreement with fp32")
    ax_q.legend(loc="upper right")
    fig.suptitle("SmolLM2-135M-Instruct: dtypes on a 2-core CPU")
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, help="the converted SmolLM2 directory")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--alone", type=int, default=3, help="int8 prompts also run alone")
    parser.add_argument("--speed-tokens", type=int, default=16)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--min-seconds", type=float, default=5.0)
    parser.add_argument("--out", type=Path, default=RESULTS / "dtypes")
    parser.add_argument("--from-json", action="store_true", help="only redraw md/png from json")
    args = parser.parse_args()
    if args.from_json:
        saved = json.loads(args.out.parent.joinpath(args.out.name + ".json").read_text())
        quality = [Quality(**q) for q in saved["quality"]]
        write_report(args.out, quality, saved["runs"], saved["meta"], saved.get("machine"))
        return
    if args.model_dir is None:
        parser.error("--model-dir is required to measure")
    torch.set_num_threads(args.threads)
    started = time.monotonic()
    load_start = load_average()
    models = {mode: load_mode(args.model_dir, mode) for mode in MODES}
    tokenizer = models["float32"].tokenizer
    prompts = [chat_ids(tokenizer, p) for p in PROMPTS]
    text_ids = torch.tensor([tokenizer.encode(TEXT, add_special_tokens=False)])

    quality: list[Quality] = []
    reference: tuple[list[list[int]], torch.Tensor] | None = None
    for mode in MODES:
        alone = args.alone if mode.startswith("int8") else 0
        q, answers, logits = evaluate_quality(
            mode, models[mode], prompts, text_ids, reference, args.new_tokens, alone
        )
        if reference is None:
            reference = (answers, logits)
        quality.append(q)
        print(f"{time.monotonic() - started:6.0f}s quality", json.dumps(asdict(q)), flush=True)

    runs: list[dict[str, Any]] = []
    for rnd in range(args.rounds):
        order = MODES[rnd % len(MODES) :] + MODES[: rnd % len(MODES)]
        for n in args.clients:
            for mode in order:
                engine = engine_for(speed_model(models[mode]))
                try:
                    stats: RunStats = run_closed_loop(
                        engine, n, prompts, args.speed_tokens, args.min_seconds
                    )
                finally:
                    engine.close()
                row = {"mode": mode, "round": rnd, "load": os.getloadavg()[0], **asdict(stats)}
                runs.append(row)
                print(f"{time.monotonic() - started:6.0f}s speed", json.dumps(row), flush=True)

    meta = {
        "torch": torch.__version__,
        "cpu": f"an {torch.backends.cpu.get_cpu_capability()} CPU (oneDNN bf16 "
        f"{'supported' if cpu_has_fast_bf16() else 'unsupported'})",
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "load_start": load_start,
        "load_end": load_average(),
        "new_tokens": args.new_tokens,
        "speed_tokens": args.speed_tokens,
        "clients": args.clients,
        "rounds": args.rounds,
        "min_seconds": args.min_seconds,
        "text_tokens": int(text_ids.shape[1]),
        "command": f"nice -n 10 python -m bench.dtype_eval --threads {args.threads}",
        "wall_s": time.monotonic() - started,
    }
    data = {"meta": meta, "quality": [asdict(q) for q in quality], "runs": runs}
    write_report(args.out, quality, runs, meta, machine(), data)


def write_report(
    out: Path,
    quality: list[Quality],
    runs: list[dict[str, Any]],
    meta: dict[str, Any],
    measured_on: dict[str, Any] | None,
    data: dict[str, Any] | None = None,
) -> None:
    """OUT.md and OUT.png, and OUT.json when `data` is given (not when redrawing from it)."""
    figure = plot(quality, runs, meta["clients"])
    lines = report(quality, runs, meta)
    write_result(out, lines, machine=measured_on, data=data, figure=figure)


if __name__ == "__main__":
    main()
