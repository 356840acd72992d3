"""The SDK (memq/sdk/) against scripted gateways (httpx.MockTransport); the same calls against
the real stack are in tests/e2e/test_sdk_e2e.py."""
