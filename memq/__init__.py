"""memq: async LLM jobs with explicit long-term memory.

Shared contracts, settings, clients and the `memq` CLI.
"""

__version__ = "0.1.0"
