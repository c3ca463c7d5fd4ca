"""Forecasters of the exogenous series (prices, wind, demand, load, carbon)."""
