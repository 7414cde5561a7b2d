"""Every bound the engine enforces, with its reason."""

# A unique_code is a caller's idempotency key (Meta message ids are ~60 chars).
UNIQUE_CODE_MAX_LENGTH = 128
# Codes, references and names are identifiers, not documents.
CODE_MAX_LENGTH = 64
NAME_MAX_LENGTH = 200
# One message is billed per deduction; a quantity past this is a caller bug.
QUANTITY_MAX = 1_000_000
# The ceiling on money: every amount in a request and every bucket and pool figure stays at or
# under 2^53 - 1 minor units, the largest integer a browser's JSON (an IEEE double) holds exactly.
# It also keeps any sum of two figures inside BIGINT. A request that would pass it is refused
# with `amount_too_large`.
AMOUNT_MAX_MINOR = 2**53 - 1
# One batch is one transaction: bounded so a lock is never held for long.
BATCH_MAX_ITEMS = 1000
# Cycle reset catch-up: more missed cycles than this means a broken clock.
MAX_CATCH_UP_CYCLES = 120
# Deductions queued for one pool while its group is written: 64 concurrent batches of 1,000 (the
# heaviest load the hot-pool bench sends), about 3 s of writes at 25,000/s and ~64 MB of queued
# requests. Past it a sender would wait longer than a retry costs: answer 503 with Retry-After
# instead of queueing without bound and holding every caller's memory and connection.
MAX_QUEUED_DEDUCTIONS_PER_POOL = 65_536
# What a 503 asks the caller to wait before retrying (the Retry-After header).
RETRY_AFTER_SECONDS = 1
# Transactions the backfill (or its rollback) may take for one company: again when a lock wait timed out
# behind a busy deduction group, or a package was opened meanwhile. Past this the company is left as it
# was (nothing written) and reported; a later run picks it up.
BACKFILL_COMPANY_ATTEMPTS = 3
