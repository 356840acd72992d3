"""Loaded into every mutant's pytest run (`-p tests.mutation.pytest_plugin`).

Property tests run the same examples for every mutant, and never fail on a deadline: on
a loaded machine a slow example would otherwise count as a killed mutant.
"""

from hypothesis import settings

settings.register_profile("mutation", deadline=None, derandomize=True)
settings.load_profile("mutation")
