"""The `memq` command: run the stack on embedded defaults and talk to it.

Every command that talks to the gateway goes through the SDK (`memq.Client`, built in
`common.connect`) and ends with the exit codes of `EXIT_CODES`; every command that prints
data has `--json`. One module per command group; this file is the command table:

    up.py         up, worker, bench        run memq (`memq up` drives memq.ops.launcher)
    eval.py       eval                     measure memory on the running stack
    chat.py       chat
    submit.py     submit generate|summarize
    jobs.py       jobs ls|show|watch|cancel|replay
    memory.py     memory add|ingest|search|ls|forget
    shortcuts.py  remember, generate, summarize, status (the first commands memq had)
    keys.py       keys create|ls|revoke    administer API keys, straight on Redis
    common.py     the client, exit codes, consoles, input, the shared options
    follow.py     following a job live (--watch); views.py: how results are shown
"""

from __future__ import annotations

import typer

from memq.cli import chat, eval, jobs, keys, memory, shortcuts, submit, up

EXIT_CODES = (
    "Exit codes: 0 ok; 1 the gateway refused the request, or the job failed, was cancelled "
    "or did not finish in time; 2 usage error (a bad option or value); 3 the gateway cannot "
    "be reached. Configuration: MEMQ_GATEWAY_URL (default http://127.0.0.1:8000) and "
    "MEMQ_API_KEY, from the environment or ./.env; --gateway and --api-key override them."
)
RUN = "Run memq"
USE = "Jobs, memories, chat"
SHORTCUTS = "Shortcuts (the first commands memq had)"
ADMINISTER = "Administer"

app = typer.Typer(
    help="memq: async LLM jobs with explicit long-term memory.",
    epilog=EXIT_CODES,
    no_args_is_help=True,
)
# The command table: every command and group, and its panel in `memq --help`.
app.command(rich_help_panel=RUN)(up.up)
app.add_typer(submit.app, name="submit", rich_help_panel=USE)
app.add_typer(jobs.app, name="jobs", rich_help_panel=USE)
app.add_typer(memory.app, name="memory", rich_help_panel=USE)
app.command(rich_help_panel=USE)(chat.chat)
app.command(context_settings=up.PASS_THROUGH, rich_help_panel=RUN)(up.worker)
app.command(context_settings=up.PASS_THROUGH, rich_help_panel=RUN)(up.bench)
app.command("eval", rich_help_panel=RUN)(eval.eval_)
app.command(rich_help_panel=SHORTCUTS)(shortcuts.remember)
app.command(rich_help_panel=SHORTCUTS)(shortcuts.generate)
app.command(rich_help_panel=SHORTCUTS)(shortcuts.summarize)
app.command(rich_help_panel=SHORTCUTS)(shortcuts.status)
app.add_typer(keys.app, name="keys", rich_help_panel=ADMINISTER)

__all__ = ["app"]
