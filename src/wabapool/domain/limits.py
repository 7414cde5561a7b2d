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
# Companies (each with its pool, or its WABAs' packages) one group commit may span. Every pool of a group
# stays locked until the group commits, so a group over many pools makes each of them wait for the others'
# rows; 100 keeps a group's transaction near one pool's (about 3 ms of decisions and one write) while a
# spread load still forms full groups. On Citus each company is a shard: fewer companies, fewer shards in
# the group's two-phase commit.
MAX_POOLS_PER_GROUP = 100
# Groups of one process applied at once (each with its own connection and transaction, over different
# companies): while one group waits on the network another decides; more only adds lock waits between
# processes and takes connections from the pool's other users.
MAX_GROUPS_IN_FLIGHT = 4
# What a 503 asks the caller to wait before retrying (the Retry-After header).
RETRY_AFTER_SECONDS = 1
# Transactions the backfill (or its rollback) may take for one company: again when a lock wait timed out
# behind a busy deduction group, or a package was opened meanwhile. Past this the company is left as it
# was (nothing written) and reported; a later run picks it up.
BACKFILL_COMPANY_ATTEMPTS = 3

# --- Shared resources a request can hold, and each one's bound (SPEC section 5, "fair sharing") ---
# Event-loop time: the CSV export's decrypting and formatting run in this many threads, shared by every
# export of the process (service/reports/export.py); the loop only awaits their pages. Two: the machine's
# cores, and never more than the deduction path can spare.
EXPORT_FORMAT_THREADS = 2
# CSV exports one company runs at once in one process (WABAPOOL_EXPORTS_PER_COMPANY): the SPEC's "a few";
# past it 429 `too_many_exports`. Ten, so that a company's people downloading at once are served, while the
# pool of format threads above keeps them from costing other companies more than one export does.
EXPORTS_PER_COMPANY = 10
# Exports open at once in one process, every company: the bound on the memory they hold together (a stalled
# export holds about three pages' text, its queue's, the one waiting for room, the socket's: ~2.5 MB, so
# ~160 MB at worst).
EXPORTS_OPEN_MAX = 64
# What a `too_many_exports` asks the caller to wait: an export takes seconds, a retry sooner is wasted.
EXPORT_RETRY_AFTER_SECONDS = 5
# Rows per read of the CSV export: a read costs two statements and a round trip that a loaded database makes
# slow, so a few thousand rows (2,000 took 1.5x the time of 5,000 for a million rows); a page of rows is
# ~5 MB while it is formatted, its text ~0.9 MB after.
EXPORT_PAGE_ROWS = 5000
# Memory for a response: formatted pages of one export waiting for its client. A client that stops reading
# holds at most these (and one formatted page waiting for room); the pipeline waits for it (back-pressure).
EXPORT_QUEUE_PAGES = 1
# The response-size cap of one export: ~25 M rows, far past any real period (a million rows is ~160 MB).
# Past it the stream is cut (no final chunk), never sent as if whole.
EXPORT_BYTES_MAX = 4 * 1024**3
# Memory for a webhook receiver's answer: bytes of it the worker reads at most (worker/delivery.py).
# Standard Webhooks decides on the status; the body is only a hint kept for the dead letter.
WEBHOOK_ANSWER_MAX_BYTES = 64 * 1024
# The public API's rate limits (token buckets; WABAPOOL_RATE_COMPANY_PER_SECOND, …_BURST, WABAPOOL_RATE_TOKEN_…):
# the page makes a handful of calls a view, an integration a few a second. A company's people share its
# bucket (one company cannot take the server's time from the others); a token's is smaller, so one leaked or
# runaway token cannot spend its whole company's. Past either, 429 `rate_limited` with Retry-After.
RATE_COMPANY_PER_SECOND = 50.0
RATE_COMPANY_BURST = 100
RATE_TOKEN_PER_SECOND = 20.0
RATE_TOKEN_BURST = 40
# Slow clients (api/slow_clients.py): a request's line and headers must arrive within this many seconds of the
# connection opening or its previous response ending (WABAPOOL_HEADER_TIMEOUT_SECONDS), its body within
# BODY_READ_TIMEOUT_SECONDS of the app asking for it (WABAPOOL_BODY_TIMEOUT_SECONDS; 408 past it). A real client
# sends its headers in one packet and its ≤ 2 MB body in well under a second; a client sending a byte a second
# would otherwise hold a connection, and everything waiting on it, forever.
HEADER_READ_TIMEOUT_SECONDS = 10.0
BODY_READ_TIMEOUT_SECONDS = 30.0
