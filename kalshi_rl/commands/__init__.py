"""CLI subcommand groups; each module is the composition root of its runtime."""
