"""The text of ``python -m minivgg.stylize CONTENT STYLE --explain``: a plan, made readable.

:func:`explain_text` lays out plan.py's IterationPlan (layer costs, memory peaks, totals) as a
table of layers and a list of totals; :func:`format_bytes` and :func:`format_count` write its
numbers. It relies on nothing but the plan it is given (and, for the time estimate, a rate that
machine.py measures): pure formatting, no arithmetic of its own beyond dividing and summing.
"""


def format_bytes(n):
    """1536 -> '1.5 KiB': binary units, one decimal."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def format_count(n):
    """94_730_452_992 -> '94.7 G' (decimal prefixes, as for FLOP)."""
    for prefix, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {prefix}"
    return f"{n:.0f}"


def explain_text(plan, *, gflops=None, device="cpu"):
    """The plan as a readable table of layers, then the totals per iteration.

    Sizes are width x height, as stylize prints them; shapes C x H x W. gflops: the measured
    float32 matmul rate (machine.measure_matmul_gflops), for the time estimate; none when None.
    """
    (h, w), n = plan.size, plan.batch
    lines = [f"Plan for one iteration at {w}x{h} (N={n}), forward down to {plan.deepest} "
             f"({plan.pooling} pooling, {8 * plan.itemsize}-bit floats) and the gradient with "
             "respect to the image:", "", _row("layer", "output C x H x W", "multiply-adds",
                                              "output", "kept", "algorithm", "buffers", "fwd peak",
                                              "bwd peak")]
    for la, forward, backward in zip(plan.layers, plan.forward_peaks, plan.backward_peaks):
        _, c, oh, ow = la.shape
        kept = plan.kept_layer_bytes(la)
        lines.append(_row(la.name, f"{c} x {oh} x {ow}", format_count(la.macs) if la.macs else "-",
                          format_bytes(la.out_bytes), format_bytes(kept) if kept else "-",
                          la.algorithm or "-", format_bytes(la.buffer_bytes) if la.buffer_bytes
                          else "-", format_bytes(forward), format_bytes(backward)))
    return "\n".join(lines + ["", "kept: held until backward ends (ReLU's mask, max pool's argmax, "
                              "a style layer's output); peaks: all one iteration holds then", ""]
                     + _totals_lines(plan, gflops, device))


def _row(*cells):
    """One line of the layer table: the name left-aligned, the rest right-aligned."""
    widths = (9, 18, 14, 11, 10, 10, 11, 11, 11)
    return cells[0].ljust(widths[0]) + "".join(c.rjust(w) for c, w in zip(cells[1:], widths[1:]))


def _totals_lines(plan, gflops, device):
    pixels = plan.batch * plan.size[0] * plan.size[1]
    macs = plan.forward_macs
    optimiser = "Adam" if plan.optimizer != "lbfgs" else \
        f"L-BFGS, m={plan.history}" + (", float16" if plan.half_history else "")
    where = "{}'s {}".format(*plan.peak_layer)
    lines = ["Totals per iteration:",
             f"  forward multiply-adds (convolutions)  {format_count(macs)}  "
             f"({macs // pixels:,} per pixel)",
             f"  forward + input gradient              {format_count(2 * macs)}  "
             f"({2 * macs // pixels:,} per pixel)"]
    if plan.gram_macs:
        lines.append(f"  Gram matrices, both ways              {format_count(2 * plan.gram_macs)}"
                     f"  (+{100 * plan.gram_macs / macs:.1f}%)")
    lines += [f"  FLOP (2 x 2 x multiply-adds)          {format_count(plan.flop)}", "",
              f"  network weights (all conv layers)     {format_bytes(plan.weight_bytes)}",
              f"  Winograd kernels (made once)          {format_bytes(plan.kernel_bytes)}",
              f"  loss targets (content, Gram)          {format_bytes(plan.target_bytes)}",
              f"  optimiser state ({optimiser})".ljust(39) + f" {format_bytes(plan.state_bytes)}",
              *([f"  style masks (one per style and layer) {format_bytes(plan.mask_bytes)}"]
                if plan.mask_bytes else []),
              f"  kept for backward (masks, losses)     {format_bytes(plan.kept_bytes)}",
              f"  transient at the peak                 {format_bytes(plan.transient_bytes)}  "
              f"({where})",
              f"  peak memory estimate                  {format_bytes(plan.peak_bytes)}"]
    if gflops:
        lines += [f"  estimated time per iteration          {plan.flop / (gflops * 1e9):.2f} s",
                  f"    (every FLOP at this {device.upper()}'s measured float32 matmul rate, "
                  f"{gflops:.0f} GFLOP/s; real runs are slower)"]
    return lines


def explain_tiled_text(tiled, *, gflops=None, device="cpu"):
    """A tile_plan.TiledPlan as text: the table of one iteration on the largest window, then the
    grid, its margins, the overhead and the tiled run's peak memory."""
    layout, whole = tiled.layout, tiled.whole
    (h, w), (rows, cols) = layout.size, layout.grid
    rm, cm = layout.margins
    wh, ww = layout.largest_window
    flop, first = tiled.flop, tiled.moment_layout    # pass 2 forward + backward, pass 1 forward
    lines = ["The largest window's iteration (each tile's, at most):",
             explain_text(tiled.window, device=device), "",
             f"Tiled at {w}x{h}: {layout.tile} px tiles, a grid of {rows} x {cols} "
             f"({len(layout.tiles)} tiles), each run on its window (the tile and margins):",
             f"  margins                               {rm.before} px top, {rm.after} px bottom, "
             f"{cm.before} px left, {cm.after} px right",
             f"    (the reach of {whole.deepest} beyond its {rm.stride} px cell; top and left "
             f"rounded up to {rm.stride} px)",
             f"  largest window                        {ww}x{wh}",
             f"  pixels computed per pass              {layout.overhead:.2f}x the image's "
             "at the input,",
             f"  convolution work per pass             {tiled.work:.2f}x the image's (the "
             "margins narrow layer by layer)",
             "  passes per iteration                  per tile a forward (the moments), then "
             "per tile",
             "                                        a forward and backward",
             f"  the moments' pass                     {first.tile} px tiles, a grid of "
             f"{first.grid[0]} x {first.grid[1]}, work {tiled.moment_overhead:.2f}x,",
             f"                                        no graph: "
             f"{format_bytes(tiled.moment_window_bytes)} on its largest window",
             f"  FLOP, estimated                       {format_count(flop)}  "
             f"({flop / whole.flop:.2f}x untiled)",
             f"  the program and its images            {format_bytes(tiled.held_bytes)}",
             f"  untiled peak memory estimate          "
             f"{format_bytes(tiled.held_bytes + whole.peak_bytes)}",
             f"  tiled peak memory estimate            {format_bytes(tiled.peak_bytes)}"]
    if gflops:
        lines.append(f"  estimated time per iteration          {flop / (gflops * 1e9):.2f} s")
    return "\n".join(lines)


def schedule_text(scales, *, gflops=None):
    """One line per scale of a coarse-to-fine run, then the whole schedule's total.

    scales: [(plan, iterations)], the IterationPlan of each scale (smallest first) and the
    iterations planned there. Each line: size, iterations, FLOP per iteration and for the scale,
    peak memory, and with ``gflops`` the estimated seconds (every FLOP at the matmul rate).
    """
    lines = ["Schedule (coarse to fine; each size starts from the last one's result):", "",
             "scale".ljust(7) + "".join(c.rjust(w) for c, w in zip(
                 ("size", "iterations", "FLOP / it", "FLOP", "peak", "est. time"),
                 (11, 12, 12, 12, 11, 11)))]
    flop = seconds = 0.0
    for k, (plan, iterations) in enumerate(scales):
        h, w = plan.size
        total = plan.flop * iterations
        flop, seconds = flop + total, seconds + (total / (gflops * 1e9) if gflops else 0.0)
        lines.append(f"{k + 1:<7}" + "".join(c.rjust(w_) for c, w_ in zip(
            (f"{w}x{h}", str(iterations), format_count(plan.flop), format_count(total),
             format_bytes(plan.peak_bytes), _seconds(total, gflops)), (11, 12, 12, 12, 11, 11))))
    peak = max(plan.peak_bytes for plan, _ in scales)
    lines.append("total".ljust(7) + "".join(c.rjust(w) for c, w in zip(
        ("", str(sum(n for _, n in scales)), "", format_count(flop), format_bytes(peak),
         _seconds(flop, gflops)), (11, 12, 12, 12, 11, 11))))
    return "\n".join(lines)


def _seconds(flop, gflops):
    return f"{flop / (gflops * 1e9):.0f} s" if gflops else "-"
