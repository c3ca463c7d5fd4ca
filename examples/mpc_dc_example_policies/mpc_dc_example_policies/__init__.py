"""Example controllers for mpc-dc, written only against :mod:`mpc_dc.policy`."""

from mpc_dc_example_policies.bau import BusinessAsUsual

__all__ = ["BusinessAsUsual"]
