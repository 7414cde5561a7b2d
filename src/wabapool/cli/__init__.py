"""The `wabapool` command: the only place with Rich output."""
