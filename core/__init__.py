"""kalshi-rl's compiled core: Numba kernels over NumPy arrays.

Imports numpy and numba only, never ``kalshi_rl``: the feed, the env and the actor all
stand on it.  Modules: ``dtypes`` (layouts, constants), ``book`` (L2 book set), ``ring``
(SPSC rings + COPY encoders), ``features`` (the observation kernel), ``fills`` (fees,
fills, positions).
"""
