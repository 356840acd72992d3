"""The memory evaluation set now lives in the installed package (`memq eval` runs it against
a running stack); bench scripts keep importing it from here."""

from memq.evaluation.data import FACTS, SAID, Fact, SaidFact, contains_answer, distractors

__all__ = ["FACTS", "SAID", "Fact", "SaidFact", "contains_answer", "distractors"]
