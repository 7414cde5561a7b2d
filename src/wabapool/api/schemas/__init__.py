"""Wire models: what goes over HTTP. Money is an integer in minor units, never a float.

fields.py        the typed fields the models are made of (ids, amounts, timestamps)
envelope.py      the error envelope, the health check
money.py         deductions, batches, refunds, payments
companies.py     companies, packages, WABAs, caps, alerts, prices, webhooks
billing_info.py  the balance page's body
reports.py       the request log, usage, billing events, preferences
"""
