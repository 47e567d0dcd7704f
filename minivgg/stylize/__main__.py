"""``python -m minivgg.stylize``: the command line; every mistake is one line and exit status 2.

The program owns its process, so it first asks the C library to keep freed memory for reuse
(machine.keep_freed_memory: every iteration frees and allocates the same large arrays, and fresh
pages cost a fifth of an iteration at 512 px, a third at 1024 px); ``main()`` and
``minivgg.stylize(...)`` called from Python leave that to their caller.

Exit status: 0 done (or --explain printed), 2 a bad input or setting (``error: <sentence>``),
130 interrupted with Ctrl-C (the image so far is saved first).
"""
import sys

from .. import machine
from ..errors import UserError
from . import execute
from .options import parse_args
from .run import Interrupted


def main(argv=None):
    """Run the program on ``argv`` (sys.argv[1:] when None); return the exit status."""
    try:
        execute(parse_args(argv))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return UserError.exit_code
    except Interrupted as exc:
        print(f"{exc}", file=sys.stderr)
        return Interrupted.exit_code
    except KeyboardInterrupt:
        print("interrupted before the first iteration; nothing was written", file=sys.stderr)
        return Interrupted.exit_code
    return 0


if __name__ == "__main__":
    machine.keep_freed_memory()        # the process is the program's (module docstring)
    sys.exit(main())
