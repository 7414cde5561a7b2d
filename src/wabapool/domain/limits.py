"""Every bound the engine enforces, with its reason."""

# A unique_code is a caller's idempotency key (Meta message ids are ~60 chars).
UNIQUE_CODE_MAX_LENGTH = 128
# Codes, references and names are identifiers, not documents.
CODE_MAX_LENGTH = 64
NAME_MAX_LENGTH = 200
# One message is billed per deduction; a quantity past this is a caller bug.
QUANTITY_MAX = 1_000_000
# Largest amount we accept in one top-up / settlement / price (fits BIGINT with room).
AMOUNT_MAX_MINOR = 10**15
# One batch is one transaction: bounded so a lock is never held for long.
BATCH_MAX_ITEMS = 1000
# Cycle reset catch-up: more missed cycles than this means a broken clock.
MAX_CATCH_UP_CYCLES = 120
