"""The optimisation loop: the image is the only variable, VGG-19 and the targets stay fixed.

Given a checked ``Job`` (prepare.py) the run builds the targets once (the content's responses, the
styles' blended Gram matrices), starts from the init image, and lets L-BFGS or Adam lower the
objective of losses.py one iteration at a time. Around that loop is what users of long runs need:
a progress bar (tqdm: iteration, loss, it/s, ETA), ``--print-every`` lines, a CSV log rewritten
atomically each iteration, checkpoints with the optimiser state (checkpoint.py), resume, an early
stop (``--tol``), Ctrl-C that saves the image so far, and a stop at the last finite image if the
loss becomes NaN or infinite. Everything is written with a temporary file and a rename.
"""
import dataclasses
import functools
import sys
import time

import numpy as np
from PIL import Image
from tqdm import tqdm

import miniautograd as ag

from .. import guided, image, losses, masks, optim, tiled
from ..errors import UserError
from ..files import atomic_write
from .checkpoint import load_state, save_checkpoint
from .options import DEFAULT_ADAM_LR, flag

LOG_COLUMNS = ("iteration", "total", "content", "style", "tv", "seconds")
TERMS = LOG_COLUMNS[1:5]             # the loss terms, as losses.Objective.value_and_grad names them
CHECKPOINT_VERSION = 2               # 2: the optimiser state holds the terms of its point


class Interrupted(Exception):
    """Ctrl-C during the run: the image so far was saved; __main__ exits with 130."""

    exit_code = 130


# -- the pieces of a run ------------------------------------------------------------------------
def build_objective(job, opts, to_device):
    """losses.Objective with targets computed once from the content and the style images;
    with ``job.tile`` all of it tile by tile (tiled.TiledObjective)."""
    mean, tile = job.net.mean, job.tile
    x = to_device(image.preprocess(job.content, mean))
    content = (tiled.tiled_responses(job.net, x, opts.content_layers, tile=tile) if tile else
               losses.content_targets(job.net, x, opts.content_layers))
    styles = [to_device(image.preprocess(rgb, mean)) for rgb in job.styles]
    moments = functools.partial(tiled.tiled_moments, tile=tile) if tile else losses.image_moments
    if job.masks:
        style = guided_style(job, opts, styles, to_device)
    else:
        style = losses.style_targets(job.net, styles, opts.style_layers, moments=moments,
                                     blend=opts.style_blend_weights, loss=opts.style_loss)
    w = losses.layer_weights(opts.style_layers, opts.style_layer_weights)
    objective = losses.Objective(job.net, content, style, w, content_weight=opts.content_weight,
                                 style_weight=opts.style_weight, tv_weight=opts.tv_weight,
                                 style_loss=opts.style_loss,
                                 layer_loss=guided.guided_layer_loss if job.masks else None)
    return tiled.TiledObjective(objective, tile=tile) if tile else objective


def guided_style(job, opts, styles, to_device):
    """--style-masks: {layer: guided.GuidedTarget}, the masks at the content's size."""
    layer_masks = masks.masks_at(job.net, job.masks, job.content.shape[:2], opts.style_layers,
                                 to_device=to_device)
    return guided.guided_style_targets(job.net, styles, layer_masks, opts.style_layers,
                                       loss=opts.style_loss, moments=losses.image_moments)


def with_matched_colors(job, opts):
    """--match-colors: the job with every style recoloured to the content's RGB mean and
    covariance (image.match_colors), and the init too when it is the first style."""
    if not opts.match_colors:
        return job
    styles = [image.match_colors(rgb, job.content) for rgb in job.styles]
    init = image.resize_to(styles[0], job.content.shape[:2]) if opts.init == "style" else job.init
    return dataclasses.replace(job, styles=styles, init=init)


def make_optimizer(opts, x0, fn):
    """L-BFGS (the paper's choice, the default) or Adam with ``--learning-rate``."""
    if opts.optimizer == "adam":
        lr = DEFAULT_ADAM_LR if opts.learning_rate is None else opts.learning_rate
        return optim.Adam(x0, fn, lr=lr)
    return optim.LBFGS(x0, fn, history=opts.lbfgs_history)


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


class Log:
    """The rows of the CSV log; the whole file is rewritten atomically after each iteration."""

    def __init__(self, path, rows=()):
        self.path, self.rows = path, [list(r) for r in rows]

    def add(self, iteration, parts, seconds):
        self.rows.append([iteration, *(parts[name] for name in TERMS), seconds])
        if self.path is not None:
            lines = [",".join(LOG_COLUMNS)] + [
                f"{int(r[0])}," + ",".join(f"{v:.9g}" for v in r[1:5]) + f",{r[5]:.3f}"
                for r in self.rows]
            atomic_write(self.path, ("\n".join(lines) + "\n").encode())


def add_terms_from_log(state):
    """Give a version-1 checkpoint's optimiser state the loss terms of its point, which the
    optimiser did not keep then: its last log row holds them (that iteration's accepted point)."""
    opt_state = state["optimizer_state"]
    if "term_names" not in opt_state and state["rows"]:
        opt_state["term_names"] = np.array(TERMS)
        opt_state["term_values"] = np.array(state["rows"][-1][1:5], dtype=np.float64)


# -- the run ------------------------------------------------------------------------------------
class Run:
    """One style-transfer run; ``execute()`` returns the result as a PIL image."""

    def __init__(self, job, opts, *, say):
        job = with_matched_colors(job, opts)
        self.job, self.opts, self.say = job, opts, say
        self.to_device = job.device.put
        self.objective = build_objective(job, opts, self.to_device)
        x0 = image.preprocess(job.init, job.net.mean)
        self.start, self.elapsed0, rows = 0, 0.0, []
        state = load_state(job.resume_from) if job.resume_from else None
        if state is not None:
            x0, rows = self.check_resumable(state), state["rows"]
            add_terms_from_log(state)
        # value_and_grad returns (total, grad, terms): the optimiser keeps the accepted point's
        self.opt = make_optimizer(opts, self.to_device(x0), self.objective.value_and_grad)
        if state is not None:
            self.opt.load_state_dict(state["optimizer_state"])
            self.start, self.elapsed0 = int(state["iteration"]), float(state["elapsed"])
        self.log = Log(job.log, rows)
        self.iteration, self.t0 = self.start, None
        self.digits = max(4, len(str(opts.iterations)))

    def check_resumable(self, state):
        """The checkpoint's image, after checking that it belongs to a run like this one."""
        x, what = state["x"], f"the checkpoint '{self.job.resume_from}'"
        if tuple(x.shape[2:]) != self.job.content.shape[:2]:
            raise UserError(f"{what} holds a {x.shape[3]}x{x.shape[2]} image but this run makes "
                            f"{self.job.content.shape[1]}x{self.job.content.shape[0]}; resume "
                            "with the same images and --size")
        if state["optimizer"] != self.opts.optimizer:
            raise UserError(f"{what} was made with --optimizer {state['optimizer']}; resume with "
                            "the same optimizer")
        if int(state["iteration"]) >= self.opts.iterations:
            raise UserError(f"{what} is at iteration {int(state['iteration'])}, already at "
                            f"--iterations {self.opts.iterations}; raise --iterations to go on")
        return x

    def seconds(self):
        return self.elapsed0 + (time.perf_counter() - self.t0)

    # -- writing ----------------------------------------------------------------------------
    def write_image(self, path, x=None):
        rgb = result_rgb(self.job, self.opts, self.opt.x if x is None else x)
        image.save_png(path, rgb, self.job.alpha)

    def checkpoint(self):
        state = {"version": CHECKPOINT_VERSION, "iteration": self.iteration,
                 "x": ag.to_cpu(self.opt.x), "optimizer": self.opts.optimizer,
                 "optimizer_state": self.opt.state_dict(), "elapsed": self.seconds(),
                 "rows": self.log.rows}
        path = save_checkpoint(self.job.output, self.iteration, state, self.write_image,
                               digits=self.digits)
        self.say(f"checkpoint: {path}")

    # -- the loop ---------------------------------------------------------------------------
    def execute(self):
        """Run the remaining iterations; save and return the result (a PIL image)."""
        self.t0 = time.perf_counter()
        with tqdm(total=self.opts.iterations, initial=self.start, disable=self.opts.quiet,
                  unit="it", file=sys.stderr, dynamic_ncols=True) as bar:
            try:
                self.loop(bar)
            except KeyboardInterrupt:
                bar.close()
                self.stop_on_interrupt()
        return self.finish()

    def loop(self, bar):
        totals = [row[1] for row in self.log.rows]
        while self.iteration < self.opts.iterations:
            try:
                loss = self.opt.step()
            except optim.NonFiniteLoss:
                self.stop_on_non_finite()
            self.iteration += 1
            totals.append(loss)
            self.after_iteration(bar, self.opt.terms)      # those of the point the step accepted
            if self.converged(totals):
                break

    def after_iteration(self, bar, p):
        """Log, progress bar, printed line and checkpoint after iteration ``self.iteration``."""
        i, opts = self.iteration, self.opts
        self.log.add(i, p, self.seconds())
        bar.update(1)
        bar.set_postfix(loss=f"{p['total']:.4g}", refresh=False)
        if opts.print_every and i % opts.print_every == 0:
            bar.write(f"iteration {i}: total {p['total']:.6g} = content {p['content']:.6g} "
                      f"+ style {p['style']:.6g} + tv {p['tv']:.6g}", file=sys.stdout)
        if opts.checkpoint_every and i % opts.checkpoint_every == 0:
            self.checkpoint()

    def converged(self, totals):
        """L-BFGS found no step that lowers the loss, or (--tol) the loss fell by less than
        tol, relatively, over the last --tol-window iterations."""
        if getattr(self.opt, "converged", False):
            self.say(f"stopped at iteration {self.iteration}: L-BFGS found no step that lowers "
                     "the loss (converged)")
            return True
        n, tol = self.opts.tol_window, self.opts.tol
        if not tol or len(totals) <= n:
            return False
        before, now = totals[-1 - n], totals[-1]
        gain = (before - now) / max(abs(before), 1e-30)
        if gain >= tol:
            return False
        self.say(f"stopped early at iteration {self.iteration}: the loss fell by {100 * gain:.3g}% "
                 f"over the last {n} iterations, less than --tol {tol}")
        return True

    def stop_on_interrupt(self):
        """Ctrl-C: save the image of the last finished iteration (and a checkpoint), then stop."""
        if self.job.output is not None:
            self.write_image(self.job.output)
            if self.opts.checkpoint_every:
                self.checkpoint()
        where = f"; saved the image so far to {self.job.output}" if self.job.output else ""
        raise Interrupted(f"interrupted at iteration {self.iteration}{where}")

    def stop_on_non_finite(self):
        """NaN or infinite loss: keep the last finite image, and say what to change."""
        saved = ""
        if self.job.output is not None:
            self.write_image(self.job.output)
            saved = f"; the last finite image is saved in {self.job.output}"
        fix = (f"lower {flag('learning_rate')}" if self.opts.optimizer == "adam" else
               "try --optimizer adam with a low --learning-rate")
        raise UserError(f"the loss became NaN or infinite at iteration {self.iteration + 1}"
                        f"{saved}; {fix} or smaller --style-weight/--content-weight")

    def finish(self):
        rgb = result_rgb(self.job, self.opts, self.opt.x)
        if self.job.output is not None:
            image.save_png(self.job.output, rgb, self.job.alpha)
            self.say(f"wrote {self.job.output} ({self.iteration} iterations, "
                     f"{self.seconds():.1f} s)")
        return to_pil(rgb, self.job.alpha)
