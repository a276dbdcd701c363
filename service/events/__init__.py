"""Order events (docs/contract.md §8): every transition as an event, written with it, fed and delivered.

payload.py    event_document(): the event's JSON, a pure function of what the transition's caller has
signing.py    Standard Webhooks signatures (whsec_ secrets, v1 HMAC-SHA256), never logging the key
backoff.py    the delivery retry schedule (pure)
delivery.py   the delivery loop run by `serve` and `worker`: claim under a lease, POST, acknowledge

The outbox, the feed's query and cursor, and the delivery claims are in service/store/events.py; the
metrics (oldest undelivered event's age, tries by outcome) in service/metrics.py.

This package's __init__ imports nothing, so the store can import `service.events.payload` without
loading the delivery loop (which imports the store).
"""
