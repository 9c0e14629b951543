"""What every subcommand shares: the program name, exit statuses and common options."""

from __future__ import annotations

import argparse

from parity.conventions import HARD_SIGMOID_OPTION, HARD_SIGMOID_VARIANTS

PROG = "parity"
EXIT_FAILURE = 1


def add_hard_sigmoid_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        HARD_SIGMOID_OPTION,
        choices=HARD_SIGMOID_VARIANTS,
        help="hard sigmoid variant: keras2 = clip(0.2x+0.5), keras3 = relu6(x+3)/6 "
        "(default: decided from the file)",
    )
