"""The one error base class, and the one way a command line reports it.

Every error gptjax raises on purpose derives from GptjaxError; its message is one line that names the problem and
what to do. A command-line tool runs its work through `report_errors`, which turns such an error into that line on
stderr and the error's exit status: 2 for input that cannot be used as given (a bad config, missing data), 1 for
a run that could not go on (a non-finite loss, a full disk), 128 + N for a stop by signal N. Anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations

import os
import sys
from typing import Callable


class GptjaxError(Exception):
    """An error with a message meant for the user: what is wrong and what to do about it."""

    exit_code = 2  # bad input; errors raised while a run is under way say 1


def report_errors(work: Callable[[], int | None], *, prefix: str = "error") -> int:
    """Runs work() and returns its exit status (None counts as 0); a GptjaxError becomes one line on stderr and
    its exit_code. Each tool's main() ends in this, so every tool fails the same way."""
    try:
        status = work()
    except GptjaxError as e:
        print(f"{prefix}: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:  # Ctrl-C where a tool has no handler of its own: the shell's status for it
        print(f"{prefix}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`gptjax config keys | head`): what it took was enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so that the exit's flush cannot fail
        return 0
    return 0 if status is None else int(status)


class Interrupted(GptjaxError):
    """A signal asked a second time for the work to stop, and it stopped at once; exit 128 + the signal's number
    (130 for SIGINT, 143 for SIGTERM), as the shell reports a process a signal ended."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum
