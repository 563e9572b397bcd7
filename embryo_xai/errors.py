"""Errors a user can fix, and how entry points report them: one line, non-zero exit, no traceback.

Anything raised as a :class:`UsageError` (a bad input, a missing run, a checkpoint that is not
ours) is printed as ``error: <message>`` on stderr and exits with status 1. The traceback is kept
for debugging behind ``HYDRA_FULL_ERROR=1`` (Hydra's own switch) or ``EMBRYO_XAI_DEBUG=1``.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class UsageError(ValueError):
    """A problem with what the user asked for, with a message that says how to fix it."""


class CheckpointError(UsageError):
    """A checkpoint or training run that is missing, corrupt or not one of ours."""


def debug_enabled() -> bool:
    return os.environ.get("HYDRA_FULL_ERROR") == "1" or os.environ.get("EMBRYO_XAI_DEBUG") == "1"


def one_line(error: BaseException, limit: int = 100) -> str:
    """First line of an exception's message, shortened: for wrapping a library's wall of text."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def usage_error_in(error: BaseException) -> UsageError | None:
    """The UsageError behind ``error``, also when a library wrapped it (Hydra's ``instantiate`` raises
    an InstantiationException from it)."""
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, UsageError):
            return error
        error, seen = error.__cause__, seen + 1
    return None


def exit_on_usage_error(func: Callable[..., T]) -> Callable[..., T]:
    """Decorator for an entry point: a :class:`UsageError` ends the program in one clear line."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs) -> T:
        try:
            return func(*args, **kwargs)
        except Exception as error:
            usage = usage_error_in(error)
            if usage is None or debug_enabled():
                raise
            print(f"error: {usage}", file=sys.stderr, flush=True)
            raise SystemExit(1) from None

    return wrapper
