"""Operating memq: the launcher behind `memq up` (`launcher.py`: start the whole stack as real
processes and supervise it), one supervised child process and its restart policy
(`process.py`), and the embedded Redis (`redis_server.py`).

Only the CLI imports this package (and the tests, benchmarks and CI scripts, which start
stacks the same way); the services never do."""
