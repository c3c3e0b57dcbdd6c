"""Trading on paper: the Kalshi-shaped paper client, its persistence, the actor and risk."""
