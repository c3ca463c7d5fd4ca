"""Option types shared by the commands: values are checked when the command line is parsed.

Each function is an ``argparse`` ``type=``: it returns the converted value or raises
:class:`argparse.ArgumentTypeError`, which the CLI prints as one line naming the
option, e.g. ``mpc-dc: error: argument --days: expected a finite number > 0 [d],
got 'nan' (see 'mpc-dc run --help')``, exit code 2, before anything runs.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable
from pathlib import Path

import pandas as pd


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def positive_float(unit: str = "", at_most: float | None = None) -> Callable[[str], float]:
    """A finite number > 0 (and <= ``at_most`` when given; ``unit`` is shown in the
    message, e.g. ``"d"``)."""
    shown = f" [{unit}]" if unit else ""
    bound = "> 0" if at_most is None else f"in (0, {at_most:g}]"

    def parse(text: str) -> float:
        value = _number(text)
        if not math.isfinite(value) or value <= 0 or (at_most is not None and value > at_most):
            raise argparse.ArgumentTypeError(
                f"expected a finite number {bound}{shown}, got {text!r}")
        return value

    return parse


def non_negative_float(unit: str = "") -> Callable[[str], float]:
    """A finite number >= 0."""
    shown = f" [{unit}]" if unit else ""

    def parse(text: str) -> float:
        value = _number(text)
        if not math.isfinite(value) or value < 0:
            raise argparse.ArgumentTypeError(
                f"expected a finite number >= 0{shown}, got {text!r}")
        return value

    return parse


def int_at_least(low: int, high: int | None = None) -> Callable[[str], int]:
    """A whole number >= ``low`` (and <= ``high`` when given)."""

    def parse(text: str) -> int:
        value = _integer(text)
        if value < low or (high is not None and value > high):
            bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
            raise argparse.ArgumentTypeError(f"expected a whole number {bound}, got {text!r}")
        return value

    return parse


positive_int = int_at_least(1)
"""A whole number >= 1 (workers, repeats, steps)."""

seed = int_at_least(0, 2**32 - 1)
"""A random seed: a whole number in [0, 2**32 - 1] (numpy's range)."""


def utc_time(text: str) -> pd.Timestamp:
    """A date or time, read as UTC when it has no offset (``2022-04-05``, ``2022-04-05T06:00Z``)."""
    try:
        stamp = pd.Timestamp(text)
        valid = isinstance(stamp, pd.Timestamp) and stamp is not pd.NaT
    except (ValueError, TypeError, OverflowError):
        valid = False
    if not valid:
        raise argparse.ArgumentTypeError(
            f"expected a date or time like 2022-04-05 or 2022-04-05T06:00Z, got {text!r}")
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def calendar_day(text: str) -> str:
    """A calendar day ``YYYY-MM-DD`` that exists (2022-02-30 does not)."""
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}")
    try:
        pd.Timestamp(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a date YYYY-MM-DD that exists, got {text!r}") from None
    return text


def _first_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(".")


def output_dir(text: str) -> Path:
    """A directory to write: new, or an existing directory; never a file (nor under one)."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(
            f"{text} is a file; expected a directory path (new, or an mpc-dc output folder)")
    existing = _first_existing(path)
    if not existing.is_dir():
        raise argparse.ArgumentTypeError(f"{existing} is a file, so {text} cannot be created")
    return path


def output_file(text: str) -> Path:
    """A file to write: new or an existing file; never a directory (nor under a file)."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a directory; expected a file path")
    existing = _first_existing(path.parent)
    if not existing.is_dir():
        raise argparse.ArgumentTypeError(f"{existing} is a file, so {text} cannot be created")
    return path


def existing_dir(text: str) -> Path:
    """A directory that exists."""
    path = Path(text)
    if not path.is_dir():
        what = "is a file" if path.exists() else "does not exist"
        raise argparse.ArgumentTypeError(f"{text} {what}; expected a directory")
    return path


def comma_list(text: str) -> list[str]:
    """``a,b,c`` as a list of non-empty labels."""
    labels = [label.strip() for label in text.split(",")]
    if not any(labels) or not all(labels):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated labels like a,b,c, got {text!r}")
    return labels


def controller_label(text: str) -> str:
    """A controller label (``baseline``, a forecaster, ``S4+fluid`` ...), each part known
    (:func:`mpc_dc.site.scenario.label_parts`)."""
    from mpc_dc.site.scenario import label_parts
    from traces.errors import ConfigError

    try:
        label_parts(text)
    except ConfigError as err:
        raise argparse.ArgumentTypeError(err.message) from None
    return text


def label_list(text: str) -> list[str]:
    """``a,b,c``: a :func:`comma_list` of :func:`controller_label` labels."""
    return [controller_label(label) for label in comma_list(text)]


_ADDRESS = re.compile(r"(?:(?P<scheme>[a-z]+)://)?(?P<host>\[[0-9a-fA-F:]+\]|[^/:\s]+):(?P<port>\d+)")


def scheduler_address(text: str) -> str:
    """A dask scheduler address ``tcp://host:port`` (``host:port`` means tcp)."""
    match = _ADDRESS.fullmatch(text.strip())
    if match is None or not 0 < int(match["port"]) < 65536 or (
        match["scheme"] not in (None, "tcp", "tls")
    ):
        raise argparse.ArgumentTypeError(
            f"expected a scheduler address like tcp://10.0.0.5:8786, got {text!r}")
    return text.strip() if match["scheme"] else f"tcp://{text.strip()}"


def policy_spec(text: str) -> str:
    """A policy: ``package.module:Class`` or an installed entry-point name, checked by
    loading its class (:func:`mpc_dc.policy.load_policy_class`)."""
    from mpc_dc.policy import PolicyLoadError, load_policy_class

    try:
        load_policy_class(text)
    except PolicyLoadError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text.strip()
