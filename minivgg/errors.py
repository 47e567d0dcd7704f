"""The one exception type for mistakes a user can fix.

A ``UserError`` carries one sentence saying what is wrong and what to do. The command-line programs
catch it, print ``error: <sentence>`` to stderr and exit with status 2: never a traceback.
"""


class UserError(Exception):
    """A bad input or setting, described in one sentence for the person who made it."""

    exit_code = 2
