"""Start the whole stack as real processes for tests and benchmarks.

The implementation lives in `memq.launcher` (shared with `memq up`):
`start_stack(data_dir, env={...}, workers=N) -> Stack` starts a private redis-server, the
memory service, N Celery workers and the gateway on free ports and waits until all are
healthy and a worker has published its model; `Stack.gateway_url`, `Stack.stop()`.
`running_stack(...)` is the context-manager form.
"""

from memq.launcher import Stack, free_port, running_stack, start_stack

__all__ = ["Stack", "free_port", "running_stack", "start_stack"]
