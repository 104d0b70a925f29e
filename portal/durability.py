"""Commits that need not wait for the disk: the steps of a synchronous request before its last.

A synchronous request makes several transactions (the job stored, its slots and numbers
leased, the outcomes recorded, the slots given back) before the one that completes the job.
Only that last one has to be on disk before the client is answered, and on PostgreSQL its
flush takes every earlier transaction with it, since the write-ahead log is written in
order. So the earlier ones are committed with ``synchronous_commit`` off for that
transaction alone: they are as atomic and as visible to other sessions as any, and a
server crash in between loses at most work whose client has had no answer yet (and its
job, to the client, never existed). SQLite in WAL mode with ``synchronous=NORMAL`` does
not wait for the disk at a commit anyway.

Queued work never uses this: a 202 promises the job is stored, and a recorded outcome
stands for a call that must not be made twice.
"""

from __future__ import annotations

from django.db import connection


def commit_unflushed() -> None:
    """Let the current transaction's commit return before PostgreSQL has flushed it to disk
    (nothing outside a transaction, or on another database)."""
    if connection.vendor == "postgresql" and connection.in_atomic_block:
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")
