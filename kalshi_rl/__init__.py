"""kalshi-rl: record Kalshi order books, train RL agents on them, paper-trade them."""

__version__ = "0.1.0"
