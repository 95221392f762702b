"""A scale-out lookalike on one machine, for trying it and for the tests: PostgreSQL and
Redis from Debian's packages in throwaway folders on loopback ports (:mod:`.servers`), and
API servers and Celery workers pointed at them (``lookalike cluster up``)."""
