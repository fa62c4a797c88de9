# Solution: a transaction-level advisory lock. Inside a transaction a client of a transaction-mode
# pool keeps its server connection, so the lock is really its own; it ends with the transaction, so
# nothing is left on the server connection that the pool hands to the next client. The hardened
# gate takes its turns the same way (sql/hardened/07_order_gating.sql).
from pgqueue import check
from pgqueue.server import pooler

my_turn = "SELECT pg_advisory_xact_lock(%(request_id)s)"
verdict = check.turn_through_pool(my_turn)
print(verdict)
# without PgBouncer the checker says it cannot judge (and how to install it) instead
assert verdict.holds or not pooler.installed(), verdict
