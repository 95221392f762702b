"""Distributed indexing on Celery, with Redis as the broker.

``app``: the Celery app made from the settings passed down; ``enqueue``: a folder walked and
split into chunks, one task each; ``chunk``: what a worker does with one chunk; ``probe``:
the start-up check that a worker computes the catalog's reference vectors; ``worker``: the
``lookalike worker`` process; ``progress``: a queued job as its chunks say it stands.
Progress lives in the catalog (``jobs`` and ``job_chunks``), so there is no result backend.
"""
