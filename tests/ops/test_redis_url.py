"""redis+sentinel:// URLs: parsed into sentinels, service, db and the master's credentials; bad ones named."""

from __future__ import annotations

import pytest

from webchat_redis import RedisUrlError, SentinelUrl, parse_redis_url, safe_url


def test_plain_urls_are_left_to_redis_py() -> None:
    """redis://, rediss:// and unix:// URLs are not Sentinel URLs."""
    for url in ("redis://127.0.0.1:6379/0", "rediss://h:6380/1", "unix:///run/redis.sock"):
        assert parse_redis_url(url) is None


def test_sentinel_url_parts() -> None:
    """Several sentinels (default port 26379, IPv6 in brackets), the service, the db and the password."""
    parsed = parse_redis_url("redis+sentinel://:s%40cret@10.0.0.5:26380,sentinel-b,[::1]:26381/webchat/2")
    assert parsed == SentinelUrl(
        sentinels=(("10.0.0.5", 26380), ("sentinel-b", 26379), ("::1", 26381)),
        service_name="webchat",
        db=2,
        username=None,
        password="s@cret",
    )
    assert safe_url("redis+sentinel://:s%40cret@10.0.0.5/webchat") == "redis+sentinel://***@10.0.0.5/webchat"


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis+sentinel://10.0.0.5:26379", "service_name"),
        ("redis+sentinel://10.0.0.5:26379/webchat/x", "not a number"),
        ("redis+sentinel://10.0.0.5:port/webchat", "not a number"),
        ("redis+sentinel://,/webchat", "no host"),
        ("memcached://10.0.0.5", "unknown scheme"),
        ("10.0.0.5:6379", "not a URL"),
    ],
)
def test_bad_urls_are_named(url: str, says: str) -> None:
    """Each malformed URL is refused with a message saying what is wrong."""
    with pytest.raises(RedisUrlError, match=says):
        parse_redis_url(url)
