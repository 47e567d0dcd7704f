"""What a run shows and records as it goes: the CSV log and the progress bar.

The log has one row per iteration: ``iteration,total,content,style,tv,seconds,size``, the
iteration counted over all scales, the loss terms of the point the optimiser accepted, the seconds
since the start, and the longest side of the scale it ran at. The whole file is rewritten
atomically after each iteration, so a crash never leaves half a row.

The bar runs over every iteration of every scale, each weighted by its pixels (schedule.py's
``weight``): an iteration at half the size moves it a quarter as far, so tqdm's rate and ETA are
in final-size iterations and stay honest when the later, costlier scales come.
"""
import sys

import numpy as np
from tqdm import tqdm

from ..files import atomic_write

LOG_COLUMNS = ("iteration", "total", "content", "style", "tv", "seconds", "size")
TERMS = LOG_COLUMNS[1:5]             # the loss terms, as losses.Objective.value_and_grad names them


class Log:
    """The rows of the CSV log; the whole file is rewritten atomically after each iteration."""

    def __init__(self, path, rows=(), *, size=None):
        """rows: earlier rows (a resumed run's); those of version 2 checkpoints, which had no size
        column, get ``size``."""
        self.path = path
        self.rows = [list(r) if len(r) == len(LOG_COLUMNS) else [*r, size] for r in rows]

    def add(self, iteration, parts, seconds, size):
        self.rows.append([iteration, *(parts[name] for name in TERMS), seconds, size])
        if self.path is not None:
            lines = [",".join(LOG_COLUMNS)] + [
                f"{int(r[0])}," + ",".join(f"{v:.9g}" for v in r[1:5]) + f",{r[5]:.3f},{int(r[6])}"
                for r in self.rows]
            atomic_write(self.path, ("\n".join(lines) + "\n").encode())


def add_terms_from_log(state):
    """Give a version-1 checkpoint's optimiser state the loss terms of its point, which the
    optimiser did not keep then: its last log row holds them (that iteration's accepted point)."""
    opt_state = state["optimizer_state"]
    if "term_names" not in opt_state and state["rows"]:
        opt_state["term_names"] = np.array(TERMS)
        opt_state["term_values"] = np.array(state["rows"][-1][1:5], dtype=np.float64)


def progress_bar(schedule, *, done, quiet):
    """A tqdm bar over the schedule's work (final-size iterations), ``done`` of it already done."""
    return tqdm(total=schedule.total_work, initial=done, disable=quiet, file=sys.stderr,
                dynamic_ncols=True, unit="it",
                bar_format="{l_bar}{bar}| {elapsed}<{remaining}{postfix}")


def show(bar, *, done, size, iteration, iterations, loss):
    """Move the bar to ``done`` and show the scale's size, its iteration and the loss."""
    bar.set_postfix_str(f"{size} px, {iteration}/{iterations}, loss={loss:.4g}", refresh=False)
    bar.update(done - bar.n)                     # redraws (at most every 0.1 s) with the postfix
