"""Phone numbers whose last digits choose the simulated Multitel's answer
(see ``OUTCOME_RULES`` in ``restores/fake_multitel.py``)."""

from __future__ import annotations


def number(suffix: int) -> str:
    """A valid 11-digit number whose last digits choose the simulated Multitel's outcome."""
    return f"1555123{suffix:04d}"


def plain_numbers(count: int, start: int = 15551240001) -> list[str]:
    """Plain-success numbers for the simulated Multitel (all end in 01)."""
    return [str(start + i * 100) for i in range(count)]
