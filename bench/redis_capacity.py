"""How far one Redis carries the push server's Redis backend: API operations per second against Redis CPU.

    python -m bench.redis_capacity [--seconds 3] [--nodes 2] [--batch 500]

Starts a private redis-server and ``--nodes`` push-server nodes on it, drives
them through push_client batches of a chat's common mix (join a group, bind a
uid, push to a group, push to a uid, count a group) from one thread per node,
and reads redis-server's CPU time from /proc. Redis runs one thread, so
``operations/s ÷ Redis CPU share`` is the rate at which it would be saturated;
what the push server nodes need meanwhile is printed too (they scale out, Redis
does not). Small by design: a few seconds on a shared machine, not a load test.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import secrets
import time

from bench.systems import Proc, start_push_server, start_redis
from push_client import PushClient

MIX = 5  # operations per round of the mix below


def drive(api_url: str, secret: str, seconds: float, batch_size: int, worker: int) -> int:
    """Send batches of the mix for ``seconds``; how many operations were applied."""
    done = 0
    rounds = batch_size // MIX
    with PushClient(api_url, secret=secret) as push:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with push.batch() as batch:
                for index in range(rounds):
                    client_id = f"none.{worker}x{index}"  # offline ids: the state work without sockets
                    group = f"room{index % 50}"
                    batch.join_group(client_id, group)
                    batch.bind_uid(client_id, f"u{worker}-{index}")
                    batch.send_to_group(group, "hello")
                    batch.send_to_uid(f"u{worker}-{index}", "hi")
                    batch.get_client_count_by_group(group)
            done += rounds * MIX
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    secret = secrets.token_hex(16)
    redis, redis_url = start_redis()
    nodes: list[tuple[Proc, int, int]] = []
    try:
        nodes = [start_push_server(secret, f"capacity-{i}", redis_url) for i in range(args.nodes)]
        redis_cpu, node_cpu = redis.cpu(), sum(node.cpu() for node, _, _ in nodes)
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(len(nodes)) as pool:
            counts = list(
                pool.map(
                    lambda item: drive(f"http://127.0.0.1:{item[1][2]}", secret, args.seconds, args.batch, item[0]),
                    enumerate(nodes),
                )
            )
        elapsed = time.monotonic() - started
        redis_share = (redis.cpu() - redis_cpu) / elapsed
        nodes_share = (sum(node.cpu() for node, _, _ in nodes) - node_cpu) / elapsed
    finally:
        for node, _, _ in nodes:
            node.stop()
        redis.stop()
    rate = sum(counts) / elapsed
    print(f"{sum(counts)} operations in {elapsed:.1f}s through {args.nodes} node(s): {rate:,.0f} ops/s")
    print(f"redis-server CPU: {redis_share * 100:.0f}% of one core; push-server nodes: {nodes_share * 100:.0f}% in all")
    if redis_share > 0:
        print(f"one Redis saturates at about {rate / redis_share:,.0f} ops/s of this mix (one core, this machine)")


if __name__ == "__main__":
    main()
