"""Cleaning up a test's keys in the machine's shared Redis."""

from __future__ import annotations


def delete_redis_keys(redis_url: str, pattern: str) -> None:
    """Delete every key matching ``pattern`` (a test's own keys, after the test)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=pattern, count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
