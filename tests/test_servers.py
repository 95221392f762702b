"""The test servers themselves: real PostgreSQL and Redis, private to the test run.

Later tests (the PostgreSQL catalog, the Redis cache, the Celery workers) stand on these
fixtures; here they are checked to be real, writable, on loopback, and gone when stopped.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
import redis

from tests import servers


@pytest.mark.postgres
def test_postgres_fixture_is_a_private_writable_server(postgres_url: str) -> None:
    assert urlsplit(postgres_url).hostname == "127.0.0.1"
    with psycopg.connect(postgres_url, autocommit=True) as db:
        db.execute("CREATE TABLE IF NOT EXISTS probe (id int PRIMARY KEY, note text)")
        db.execute("INSERT INTO probe VALUES (1, 'é') ON CONFLICT (id) DO NOTHING")
        assert db.execute("SELECT note FROM probe WHERE id = 1").fetchone() == ("é",)
        # A cluster of its own: made by initdb in a temporary folder, not the machine's.
        (data_dir,) = db.execute("SHOW data_directory").fetchone() or ("",)
        assert Path(data_dir).name == "data"
        assert Path(data_dir).parent.name.startswith("lookalike-pg-")


@pytest.mark.redis
def test_redis_fixture_is_a_private_writable_server(redis_url: str, tmp_path: Path) -> None:
    assert urlsplit(redis_url).hostname == "127.0.0.1"
    client = redis.Redis.from_url(redis_url)
    client.set("probe", b"\x00\xff")
    assert client.get("probe") == b"\x00\xff"
    assert client.config_get("save") == {"save": ""}
    client.close()


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.slow
def test_servers_are_gone_after_their_block(tmp_path: Path) -> None:
    for why in (servers.missing_postgres(), servers.missing_redis()):
        if why:
            pytest.skip(why)
    with servers.postgres_server() as pg_url, servers.redis_server(tmp_path / "r") as r_url:
        ports = [urlsplit(pg_url).port, urlsplit(r_url).port]
        assert all(p is not None and servers.port_open(p) for p in ports)
        with psycopg.connect(pg_url, autocommit=True) as db:
            (data_dir,) = db.execute("SHOW data_directory").fetchone() or ("",)
        folder = Path(data_dir).parent
    assert not any(p is not None and servers.port_open(p) for p in ports)
    assert not folder.exists()


@pytest.mark.redis
@pytest.mark.slow
def test_redis_cluster_spreads_keys_over_its_three_nodes(tmp_path: Path) -> None:
    why = servers.missing_redis()
    if why:
        pytest.skip(why)
    with servers.redis_cluster(tmp_path / "cluster") as url:
        assert url.startswith("redis+cluster://")
        hosts = [a.split(":") for a in url.removeprefix("redis+cluster://").split(",")]
        nodes = [redis.cluster.ClusterNode(host, int(port)) for host, port in hosts]
        assert len(nodes) == 3
        client = redis.cluster.RedisCluster(startup_nodes=nodes)
        for i in range(30):
            client.set(f"probe:{i}", i)
        assert [int(client.get(f"probe:{i}") or -1) for i in range(30)] == list(range(30))
        counts = [int(redis.Redis(n.host, n.port).dbsize()) for n in nodes]
        assert sum(counts) == 30 and all(counts)
        client.close()
    assert not any(servers.port_open(n.port) for n in nodes)
