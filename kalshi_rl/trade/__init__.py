"""Paper trading: the paper client (Kalshi-API shaped), the actor and its risk limits."""
