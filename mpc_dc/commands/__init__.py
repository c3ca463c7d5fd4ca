"""CLI sub-commands: one module each, discovered by :func:`mpc_dc.cli.build_parser`.

A module defines ``register(subparsers)`` which adds its parser and sets
``func`` (taking the parsed namespace, returning an exit code).
"""
