"""Phone numbers whose last digits choose the simulated Multitel's answer
(see ``OUTCOME_RULES`` in ``restores/fake_multitel.py``)."""

from __future__ import annotations


def number(suffix: int) -> str:
    """A valid 11-digit number whose last digits choose the simulated Multitel's outcome."""
    return f"1555123{suffix:04d}"


def plain_numbers(count: int, start: int = 15551240001) -> list[str]:
    """Plain-success numbers for the simulated Multitel (all end in 01)."""
    return [str(start + i * 100) for i in range(count)]


def first_call_successes(count: int, *, start: int) -> list[str]:
    """Numbers from ``start`` on that the simulated Multitel restores at the first call: none
    of its fault tails (``..90`` to ``..97``), none of the tails it fails (``..2``, ``..5``)."""
    candidates = (str(start + i) for i in range(count * 3))
    return [n for n in candidates if not 90 <= int(n[-2:]) <= 97 and n[-1] not in "25"][:count]
