"""The optimisation loop: the image is the only variable, VGG-19 and the targets stay fixed.

Given a checked ``Job`` (prepare.py) the run goes through the scales of its schedule
(schedule.py): at each it builds the targets (the content's responses, the styles' blended Gram
matrices, at that size), starts from the previous scale's result resized with the init's finer
detail added (the init image at the first), and lets L-BFGS or Adam lower the objective of
losses.py one iteration at a time; the last scale's objective is the single-scale one at
--size. Around that loop is what users of long runs need: a progress bar and a CSV log
(progress.py), ``--print-every`` lines, checkpoints with the optimiser state (checkpoint.py),
resume, an early stop (``--tol``, per scale), Ctrl-C that saves the image so far, and a stop at
the last finite image if the loss becomes NaN or infinite. Everything is written with a
temporary file and a rename.
"""
import sys
import time

import numpy as np
from PIL import Image

import miniautograd as ag

from .. import image, optim
from ..averaging import IterateAverage
from ..errors import UserError
from .checkpoint import load_state, save_checkpoint, scale_image_path
from .checks import flag
from .objective import (at_scale, build_objective, make_optimizer, next_start,
                        with_matched_colors)
from .progress import TERMS, Log, add_terms_from_log, progress_bar, show  # noqa: F401 (TERMS)
from .schedule import describe, make_schedule, saved_schedule

# 2: the optimiser state holds the terms of its point; 3: the schedule and the scale
CHECKPOINT_VERSION = 3


class Interrupted(Exception):
    """Ctrl-C during the run: the image so far was saved; __main__ exits with 130."""

    exit_code = 130


# -- the output picture ---------------------------------------------------------------------
def result_rgb(job, opts, x):
    """The picture of a network input x: mean added back, clipped; content colours if asked."""
    rgb = image.deprocess(x, job.net.mean)
    return image.preserve_colors(job.content, rgb) if opts.preserve_colors else rgb


def to_pil(rgb, alpha):
    """rgb (H, W, 3) and alpha (H, W) or None, 0..255 floats -> an 8-bit PIL image (RGB/RGBA)."""
    pixels = np.rint(np.clip(rgb, 0, 255)).astype(np.uint8)
    if alpha is not None:
        a = np.rint(np.clip(alpha, 0, 255)).astype(np.uint8)
        pixels = np.concatenate([pixels, a[:, :, None]], axis=2)  # (H, W, 3) -> (H, W, 4)
    return Image.fromarray(pixels)


# -- the run ------------------------------------------------------------------------------------
class Run:
    """One style-transfer run over the scales of its schedule; ``execute()`` returns the result
    as a PIL image. ``objective``, ``opt`` and ``here`` (the job at this scale) are the current
    scale's: each scale gets new targets and a new optimiser (L-BFGS's history and Adam's moments
    start afresh: the gradient's scale changes with the pixel count, see docs/schedule.md)."""

    def __init__(self, job, opts, *, say):
        job = with_matched_colors(job, opts)
        self.job, self.opts, self.say = job, opts, say
        self.to_device = job.device.put
        self.schedule = make_schedule(opts, job.content.shape[:2],
                                      [rgb.shape[:2] for rgb in job.styles])
        self.iteration, self.elapsed0, self.t0 = 0, 0.0, None
        state = load_state(job.resume_from) if job.resume_from else None
        if state is None:
            shape = self.schedule.content_shapes[0]
            self.enter_scale(0, image.preprocess(image.resize_to(job.init, shape), job.net.mean))
        else:
            self.resume(state)
        self.log = Log(job.log, state["rows"] if state else (), size=opts.size)
        self.digits = max(4, len(str(sum(self.schedule.iterations))))

    def enter_scale(self, k, x0):
        """Targets, objective and a fresh optimiser for scale k, starting at x0 (NumPy input)."""
        self.scale, self.totals = k, []
        self.here = at_scale(self.job, self.schedule, k)
        self.objective = build_objective(self.here, self.opts, self.to_device)
        # value_and_grad returns (total, grad, terms): the optimiser keeps the accepted point's
        self.opt = make_optimizer(self.opts, self.to_device(x0), self.objective.value_and_grad,
                                  half_history=self.job.half_history)
        self.average = IterateAverage(self.opts.average) if self.opts.average else None

    def resume(self, state):
        """Continue the checkpoint's scale with its optimiser (and average) state."""
        x = self.check_resumable(state)
        add_terms_from_log(state)
        self.enter_scale(int(state.get("scale", 0)), x)
        self.opt.load_state_dict(state["optimizer_state"])
        if self.average is not None and state.get("average") is not None:
            self.average.load_state_dict(state["average"], like=self.opt.x)
        self.iteration, self.elapsed0 = int(state["iteration"]), float(state["elapsed"])
        done = self.opt.iteration
        self.totals = [row[1] for row in state["rows"][len(state["rows"]) - done:]] if done else []

    def check_resumable(self, state):
        """The checkpoint's image, after checking that it belongs to a run like this one."""
        what, plan = f"the checkpoint '{self.job.resume_from}'", saved_schedule(state)
        (h, w), (sh, sw) = self.job.content.shape[:2], plan["shape"]
        if (sh, sw) != (h, w):
            raise UserError(f"{what} holds a {sw}x{sh} image but this run makes {w}x{h}; resume "
                            "with the same images and --size")
        if not self.schedule.same_plan(plan["sizes"], plan["iterations"][:-1]):
            raise UserError(f"{what} was made with the schedule {describe(plan)}, this run's is "
                            f"{describe(self.schedule)}; resume with the same --start-size, "
                            "--scale-factor and --coarse-iterations")
        if state["optimizer"] != self.opts.optimizer:
            raise UserError(f"{what} was made with --optimizer {state['optimizer']}; resume with "
                            "the same optimizer")
        final = len(self.schedule.sizes) - 1
        if (int(state.get("scale", 0)) == final
                and int(state["optimizer_state"]["iteration"]) >= self.opts.iterations):
            raise UserError(f"{what} is at iteration {int(state['iteration'])}, already at "
                            f"--iterations {self.opts.iterations}; raise --iterations to go on")
        return state["x"]

    def seconds(self):
        return self.elapsed0 + (time.perf_counter() - self.t0)

    def current_x(self):
        """The scale's result so far: the iterate average with --average, else the optimiser's x."""
        if self.average is not None and self.average.count:
            return self.average.value()
        return self.opt.x

    def size(self):
        return self.schedule.sizes[self.scale]

    def where(self):
        """' (181 px)' in messages of a run with several scales; '' for a single scale."""
        return f" ({self.size()} px)" if len(self.schedule.sizes) > 1 else ""

    # -- writing ----------------------------------------------------------------------------
    def write_image(self, path):
        image.save_png(path, result_rgb(self.here, self.opts, self.current_x()), self.here.alpha)

    def checkpoint(self):
        s = self.schedule
        state = {"version": CHECKPOINT_VERSION, "iteration": self.iteration, "scale": self.scale,
                 "schedule": {"sizes": list(s.sizes), "iterations": list(s.iterations),
                              "shape": list(s.content_shapes[-1])},
                 "x": ag.to_cpu(self.opt.x), "optimizer": self.opts.optimizer,
                 "optimizer_state": self.opt.state_dict(), "elapsed": self.seconds(),
                 "average": None if self.average is None else self.average.state_dict(),
                 "rows": self.log.rows}
        path = save_checkpoint(self.job.output, self.iteration, state, self.write_image,
                               digits=self.digits)
        self.say(f"checkpoint: {path}")

    # -- the loop ---------------------------------------------------------------------------
    def execute(self):
        """Run the remaining iterations of every scale; save and return the result (PIL)."""
        self.t0 = time.perf_counter()
        with progress_bar(self.schedule, done=self.work_done(), quiet=self.opts.quiet) as bar:
            try:
                self.run_scales(bar)
            except KeyboardInterrupt:
                bar.close()
                self.stop_on_interrupt()
        return self.finish()

    def run_scales(self, bar):
        """Each scale from the current one on; the next starts from this one's result, resized
        (objective.next_start)."""
        while True:
            self.run_scale(bar)
            if self.opts.save_scales and self.job.output is not None:
                self.write_image(scale_image_path(self.job.output, self.size()))
            if self.scale + 1 == len(self.schedule.sizes):
                return
            shapes = self.schedule.content_shapes[self.scale:self.scale + 2]
            init = None if self.opts.init == "noise" else self.job.init
            self.enter_scale(self.scale + 1, next_start(self.current_x(), init,
                                                        self.job.net.mean, *shapes))

    def run_scale(self, bar):
        """The scale's remaining iterations, or fewer if it converges (--tol is per scale)."""
        while self.opt.iteration < self.schedule.iterations[self.scale]:
            try:
                loss = self.opt.step()
            except optim.NonFiniteLoss:
                self.stop_on_non_finite()
            self.iteration += 1
            if self.average is not None:
                self.average.update(self.opt.x)
            self.totals.append(loss)
            self.after_iteration(bar, self.opt.terms)      # those of the point the step accepted
            if self.converged():
                return

    def work_done(self):
        """Final-size iterations done: the earlier scales as planned, and this one so far."""
        return (self.schedule.work_before(self.scale)
                + self.opt.iteration * self.schedule.weight(self.scale))

    def after_iteration(self, bar, p):
        """Log, progress bar, printed line and checkpoint after iteration ``self.iteration``."""
        i, opts = self.iteration, self.opts
        self.log.add(i, p, self.seconds(), self.size())
        show(bar, done=self.work_done(), size=self.size(), iteration=self.opt.iteration,
             iterations=self.schedule.iterations[self.scale], loss=p["total"])
        if opts.print_every and i % opts.print_every == 0:
            bar.write(f"iteration {i}{self.where()}: total {p['total']:.6g} = content "
                      f"{p['content']:.6g} + style {p['style']:.6g} + tv {p['tv']:.6g}",
                      file=sys.stdout)
        if opts.checkpoint_every and i % opts.checkpoint_every == 0:
            self.checkpoint()

    def converged(self):
        """L-BFGS found no step that lowers the loss, or (--tol) the loss fell by less than
        tol, relatively, over the last --tol-window iterations of this scale."""
        if getattr(self.opt, "converged", False):
            self.say(f"stopped at iteration {self.iteration}{self.where()}: L-BFGS found no "
                     "step that lowers the loss (converged)")
            return True
        n, tol, totals = self.opts.tol_window, self.opts.tol, self.totals
        if not tol or len(totals) <= n:
            return False
        before, now = totals[-1 - n], totals[-1]
        gain = (before - now) / max(abs(before), 1e-30)
        if gain >= tol:
            return False
        self.say(f"stopped early at iteration {self.iteration}{self.where()}: the loss fell by "
                 f"{100 * gain:.3g}% over the last {n} iterations, less than --tol {tol}")
        return True

    def stop_on_interrupt(self):
        """Ctrl-C: save the image of the last finished iteration, at its scale's size (and a
        checkpoint), then stop."""
        if self.job.output is not None:
            self.write_image(self.job.output)
            if self.opts.checkpoint_every:
                self.checkpoint()
        where = f"; saved the image so far to {self.job.output}" if self.job.output else ""
        raise Interrupted(f"interrupted at iteration {self.iteration}{self.where()}{where}")

    def stop_on_non_finite(self):
        """NaN or infinite loss: keep the last finite image, and say what to change."""
        saved = ""
        if self.job.output is not None:
            self.write_image(self.job.output)
            saved = f"; the last finite image is saved in {self.job.output}"
        fix = (f"lower {flag('learning_rate')}" if self.opts.optimizer == "adam" else
               "try --optimizer adam with a low --learning-rate")
        raise UserError(f"the loss became NaN or infinite at iteration {self.iteration + 1}"
                        f"{self.where()}{saved}; {fix} or smaller --style-weight/--content-weight")

    def finish(self):
        rgb = result_rgb(self.here, self.opts, self.current_x())
        if self.job.output is not None:
            image.save_png(self.job.output, rgb, self.here.alpha)
            self.say(f"wrote {self.job.output} ({self.iteration} iterations, "
                     f"{self.seconds():.1f} s)")
        return to_pil(rgb, self.here.alpha)

