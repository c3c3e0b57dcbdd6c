"""The dashboard: Litestar API + streams over the live node (see docs/web.md)."""
