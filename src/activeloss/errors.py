"""Errors a user can act on.

Every problem caused by the user's input (a missing file, a corrupt image, an
option out of range, a budget larger than the pool) is raised as an
:class:`ActiveLossError` whose message names the problem in the user's terms.
The CLI prints that one line and exits with status 2; anything else is a bug.
"""


class ActiveLossError(Exception):
    """Base class of errors caused by input the user can fix."""


class DataError(ActiveLossError):
    """A dataset could not be read: missing, unreadable, corrupt or inconsistent."""


class ConfigError(ActiveLossError):
    """An option or a combination of options is invalid."""


class PoolError(ActiveLossError):
    """The pool cannot serve the request (e.g. a budget larger than the unlabeled pool)."""


class RunInterrupted(ActiveLossError):
    """A run stopped before its end for a reason outside the user's input (a worker process died);
    what it committed is kept and ``--resume`` continues it.  The CLI exits with status 3."""

    exit_code = 3
