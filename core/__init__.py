"""kalshi-rl's compiled core: Numba kernels over NumPy arrays.

Imports numpy and numba only, never ``kalshi_rl``: the feed, the env and the actor all
stand on it.  Modules: ``dtypes`` (layouts, constants), ``book`` (L2 book set), ``ring``
(SPSC rings + COPY encoders), ``features`` (the observation kernel), and the matching engine
shared by the env and the paper client: ``fees``, ``account``, ``orders``, ``matching``,
``queue``, ``latency`` (docs/engine.md); ``fills`` keeps the wave-1 names.
"""
