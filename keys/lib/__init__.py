"""Plain helpers: addresses, client IPs, throttles, cache counters, paging, CSV safety.

Nothing here imports a model, so anything in the app may use them.
"""
