"""The building blocks of option checking, shared by options.py and its option groups
(schedule_options.py, memory_options.py, mask_options.py): an option's command-line spelling,
the number and choice checks (each a one-sentence UserError), and the comma-list parsers.
"""
import argparse
import math
import numbers

from ..errors import UserError


def flag(name):
    """The command-line spelling of an option: style_layers -> --style-layers."""
    return "--" + name.replace("_", "-")


def check_number(name, value, *, positive):
    """Raise UserError unless value is a finite real number, > 0 (positive) or >= 0."""
    ok = (isinstance(value, numbers.Real) and not isinstance(value, bool)
          and math.isfinite(value))
    if not ok or value < 0 or (positive and value == 0):
        what = "a positive number" if positive else "a finite number >= 0"
        raise UserError(f"{flag(name)} must be {what}, not {value!r}")


def check_choice(name, value, choices):
    """UserError unless the option ``name`` is one of ``choices``."""
    if value not in choices:
        raise UserError(f"{flag(name)} must be one of {', '.join(choices)}, not {value!r}")


def name_list(text):
    """"a, b,,c" -> ["a", "b", "c"]: a comma-separated list on the command line."""
    return [part.strip() for part in text.split(",") if part.strip()]


def number_list(text):
    """"1, 0.5" -> [1.0, 0.5]; argparse's own error (turned into one sentence) otherwise."""
    try:
        return [float(part) for part in name_list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}")
