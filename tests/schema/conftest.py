"""The end-to-end stack (gunicorn, qcluster, simulated Multitel, webhook receiver) for schema tests."""

from tests.e2e.conftest import make_stack, receiver

__all__ = ["make_stack", "receiver"]
