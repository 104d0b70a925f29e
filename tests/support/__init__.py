"""Importable helpers of the test suite (and of the benchmarks, for ``harness``).

Tests import helpers from here, never from a ``conftest.py``; the conftest files hold only
fixtures, thin ones that call these builders.

- ``parties``: API callers (tenants with a credential, an outsider) and staff users;
- ``jobs``: jobs with their records, row counts, and what the Multitel client returns per number;
- ``numbers``: phone numbers that choose the simulated Multitel's answer;
- ``webhooks``: webhook receivers on loopback, inside the test process;
- ``queue``: tasks handed to django-q2, recorded instead of sent (the ``enqueued`` fixture);
- ``harness``: the real stack as processes (gunicorn, qcluster, the simulated Multitel), their
  database and broker, and waiting for them; shared with ``bench/``, so free of pytest.
"""
