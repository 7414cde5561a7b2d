"""The worker: webhook delivery from the outbox (Standard Webhooks), dead letters, the monthly reset.

Modules: `relay` (claim, send, record), `delivery` (one HTTP attempt), `retry` (schedule, jitter,
Retry-After), `ssrf` (URL and address checks), `cycles` (the reset scheduler), `runner` (the loop,
LISTEN/NOTIFY and polling).
"""
