"""Real PostgreSQL and Redis servers for tests: lookalike's own local-cluster starters
(:mod:`lookalike.local_cluster.servers`), each in a temporary folder on free loopback ports,
started and stopped by the test run (never a service of the machine)."""

from lookalike.local_cluster.servers import (
    free_port,
    missing_postgres,
    missing_redis,
    port_open,
    postgres_admin,
    postgres_database,
    postgres_server,
    redis_cluster,
    redis_server,
    stop,
)

__all__ = [
    "free_port",
    "missing_postgres",
    "missing_redis",
    "port_open",
    "postgres_admin",
    "postgres_database",
    "postgres_server",
    "redis_cluster",
    "redis_server",
    "stop",
]
