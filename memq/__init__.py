"""memq: async LLM jobs with explicit long-term memory (shared contracts, settings, clients, CLI)."""

__version__ = "0.1.0"
