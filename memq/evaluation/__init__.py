"""memq's labelled memory evaluation (issue 10): the data set (`data`), how it is asked and
scored (`scoring`), and the run against a live stack that `memq eval` does (`runner`).
bench/memory_eval.py uses the same data and scoring on stacks it starts itself."""
