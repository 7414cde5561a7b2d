"""Benchmarks (not tests): measured runs of wabapool, each a `python -m bench.<name>` module.

`bench.hot_pool` — many senders deducting from one hot pool (and from 100 pools):
the RFC's optimistic-lock design (`bench.baseline`) against wabapool's
group-committed single deductions and its batch deduction.
"""
