"""mpc-dc: receding-horizon MPC simulator for the energy management of AI data centers."""

__version__ = "0.1.0"
