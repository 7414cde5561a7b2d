"""wabapool: one shared balance pool for every WABA of a company."""
