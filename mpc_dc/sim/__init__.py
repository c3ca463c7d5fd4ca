"""The closed-loop simulator: backlog, plant, meter, exogenous replay and the simpy engine."""
