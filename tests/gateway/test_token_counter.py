"""The gateway's cached read of the served model: trusted for a TTL, rebuilt on change."""

from __future__ import annotations

from typing import Any

from tokenizers import Tokenizer, models, pre_tokenizers

from gateway.services.jobs import TokenCounter
from memq.contracts import ModelInfo


def _tokenizer_json(words: list[str]) -> str:
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(["[UNK]", *words])}, "[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return str(tok.to_str())


class FakeStore:
    def __init__(self, info: ModelInfo | None) -> None:
        self.info = info
        self.reads = 0

    def model_info(self) -> ModelInfo | None:
        self.reads += 1
        return self.info


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _info(name: str, words: list[str]) -> ModelInfo:
    return ModelInfo(name=name, context_window=64, tokenizer_json=_tokenizer_json(words))


def _counter(store: FakeStore, clock: Clock) -> TokenCounter:
    fake: Any = store
    return TokenCounter(fake, ttl_s=2.0, clock=clock)


def test_a_known_model_is_read_once_per_ttl() -> None:
    store, clock = FakeStore(_info("a", ["hello", "world"])), Clock()
    counter = _counter(store, clock)

    first = counter.model()
    clock.now = 1.9
    again = counter.model()

    assert first is not None and again is first
    assert store.reads == 1
    assert first[0].encode("hello world").ids == [1, 2]


def test_a_changed_model_is_seen_after_the_ttl_and_rebuilt() -> None:
    store, clock = FakeStore(_info("a", ["hello"])), Clock()
    counter = _counter(store, clock)
    first = counter.model()

    store.info = _info("b", ["x", "hello"])
    clock.now = 2.0
    second = counter.model()

    assert first is not None and second is not None
    assert second[1].name == "b"
    assert second[0].encode("hello").ids == [2]
    assert store.reads == 2


def test_an_unchanged_model_keeps_its_tokenizer() -> None:
    store, clock = FakeStore(_info("a", ["hello"])), Clock()
    counter = _counter(store, clock)
    first = counter.model()

    clock.now = 5.0
    second = counter.model()

    assert first is not None and second is not None
    assert second[0] is first[0]
    assert store.reads == 2


def test_no_model_yet_is_asked_again_on_every_call() -> None:
    store, clock = FakeStore(None), Clock()
    counter = _counter(store, clock)

    assert counter.model() is None
    assert counter.model() is None
    store.info = _info("a", ["hello"])
    served = counter.model()

    assert served is not None and served[1].name == "a"
    assert store.reads == 3


def test_a_model_that_goes_away_is_forgotten_after_the_ttl() -> None:
    store, clock = FakeStore(_info("a", ["hello"])), Clock()
    counter = _counter(store, clock)
    assert counter.model() is not None

    store.info = None
    clock.now = 3.0

    assert counter.model() is None
