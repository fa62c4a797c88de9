# Solution: a NOTIFY sent in a transaction that rolls back is never delivered.
from pgqueue import queries, server

q = queries.load("start_here/00_round_trip.sql")
with server.connect() as listener, server.connect() as talker:
    listener.execute(q["listen"])
    with talker.transaction(force_rollback=True):
        talker.execute(q["notify"], {"payload": "never delivered"})
    with talker.transaction():
        talker.execute(q["notify"], {"payload": "delivered"})
    received = [n.payload for n in listener.notifies(timeout=2, stop_after=1)]

print(received)
assert received == ["delivered"], received
