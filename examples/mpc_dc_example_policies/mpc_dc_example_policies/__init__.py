"""Example controllers for mpc-dc, written against its public interface :mod:`mpc_dc.policy`.

``bau.BusinessAsUsual`` (``example-bau``) imports nothing else of mpc-dc;
``smpc.StochasticMpc`` (``example-smpc``) also uses mpc-dc's library (forecasters,
the optimization problem) on what the interface gives it. It is not imported here,
so that loading the rule does not load the optimizer.
"""

from mpc_dc_example_policies.bau import BusinessAsUsual

__all__ = ["BusinessAsUsual"]
