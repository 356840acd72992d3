"""Builders and helpers shared by more than one test folder. A folder's own helpers live beside
its tests (tests/chaos/checker.py, tests/e2e/ops.py, tests/deploy/composefile.py).

- `stack`: the whole stack as real processes (`StackFactory`, the `stack_factory` fixture)
  and `paused()`, for every end-to-end, chaos and deployment test;
- `memory_service`: the memory service alone as a real process, its token and headers;
- `scripted_gateway`: gateway answers for tests that script one with httpx.MockTransport;
- `webhook_receiver`: a real HTTP server that records webhook deliveries.

The tiny GPT-2 every test stack serves is `bench._models.build_tiny_gpt2` (the benchmarks
serve it too; tests may import bench, bench never imports tests).
"""
