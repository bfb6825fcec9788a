#!/usr/bin/env python3
"""dask.distributed and Ray, measured the way bench/src/cluster_bench.rs
measures our cluster pool.

The Rust harness runs this script, one fresh interpreter per peer and
round, with the Python of its own virtual environment
(``target/bench-cluster-py``):

    python cluster_peers.py PEER 'CONFIG JSON'

PEER is ``dask`` (``distributed.LocalCluster(n_workers=W,
threads_per_worker=1, processes=True)`` and a ``Client``) or ``ray``
(``ray.init(num_cpus=W)`` and a ``@ray.remote`` function). CONFIG is the
harness's ``ClusterConfig``. The last line on stdout is one JSON object:

    {"python": "3.11.7", "version": "2026.8.0",
     "results": {"round_trip_ns": [...], "task_ns": [...], ...}}

whose ``results`` keys are the harness's sample keys (raw samples, lists),
which it pools over rounds. Every wait is bounded: one result by CONFIG's
``timeout_s``, collecting a batch by its ``bulk_timeout_s``. The cluster is
closed (its processes stopped) on the way out, also on error.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
# The workers import the tasks by module name: they must find this folder.
sys.path.insert(0, HERE)
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (HERE, os.environ.get("PYTHONPATH", "")) if p)

import cluster_tasks  # noqa: E402

Samples = dict[str, list[float]]
now_ns = time.perf_counter_ns
monotonic_ns = time.monotonic_ns


class Peer:
    """What the workloads need of a peer: one call, many calls, a map."""

    def call(self, f: Callable[[int], int], x: int) -> int:
        raise NotImplementedError

    def call_all(self, f: Callable[[int], int], n: int) -> list[int]:
        """Submit ``f(i)`` for every ``i`` in ``range(n)``, then collect all."""
        raise NotImplementedError

    def map(self, f: Callable[[int], int], n: int) -> list[int] | None:
        """The peer's own map over ``range(n)``; None if it has none."""
        return None


class Dask(Peer):
    def __init__(self, client: Any, timeout: float, bulk_timeout: float) -> None:
        self.client = client
        self.timeout = timeout
        self.bulk_timeout = bulk_timeout

    def call(self, f: Callable[[int], int], x: int) -> int:
        # pure=False: a fresh key for every call, never a cached result.
        return self.client.submit(f, x, pure=False).result(timeout=self.timeout)

    def _gather(self, futures: list[Any]) -> list[int]:
        from distributed import wait

        wait(futures, timeout=self.bulk_timeout)
        return self.client.gather(futures)

    def call_all(self, f: Callable[[int], int], n: int) -> list[int]:
        return self._gather([self.client.submit(f, i, pure=False) for i in range(n)])

    def map(self, f: Callable[[int], int], n: int) -> list[int] | None:
        return self._gather(self.client.map(f, range(n), pure=False))


class Ray(Peer):
    def __init__(self, timeout: float, bulk_timeout: float) -> None:
        import ray

        self.ray = ray
        self.timeout = timeout
        self.bulk_timeout = bulk_timeout
        self.remote: dict[Callable[[int], int], Any] = {}

    def _remote(self, f: Callable[[int], int]) -> Any:
        if f not in self.remote:
            self.remote[f] = self.ray.remote(f)
        return self.remote[f]

    def call(self, f: Callable[[int], int], x: int) -> int:
        return self.ray.get(self._remote(f).remote(x), timeout=self.timeout)

    def call_all(self, f: Callable[[int], int], n: int) -> list[int]:
        remote = self._remote(f)
        return self.ray.get([remote.remote(i) for i in range(n)], timeout=self.bulk_timeout)


@contextmanager
def dask_peer(cfg: dict[str, Any]) -> Iterator[tuple[Peer, str]]:
    import distributed
    from distributed import Client, LocalCluster

    timeout = float(cfg["timeout_s"])
    cluster = LocalCluster(
        n_workers=cfg["workers"],
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
    )
    try:
        client = Client(cluster, timeout=timeout)
        try:
            client.wait_for_workers(cfg["workers"], timeout=timeout)
            yield Dask(client, timeout, float(cfg["bulk_timeout_s"])), distributed.__version__
        finally:
            client.close(timeout=timeout)
    finally:
        cluster.close(timeout=timeout)


@contextmanager
def ray_peer(cfg: dict[str, Any]) -> Iterator[tuple[Peer, str]]:
    import ray

    ray.init(
        num_cpus=cfg["workers"],
        include_dashboard=False,
        log_to_driver=False,
        logging_level="ERROR",
    )
    try:
        yield Ray(float(cfg["timeout_s"]), float(cfg["bulk_timeout_s"])), ray.__version__
    finally:
        ray.shutdown()


PEERS = {"dask": dask_peer, "ray": ray_peer}


def warm_up(peer: Peer, workers: int, calls: int) -> None:
    """Every worker process running (calls that sleep 20 ms came back from
    ``workers`` pids), then ``calls`` trivial calls."""
    for _ in range(10):
        pids = set(peer.call_all(cluster_tasks.pid_after_20ms, workers))
        if len(pids) >= workers:
            break
    for _ in range(50):
        peer.call(cluster_tasks.identity, 7)
    assert sum(peer.call_all(cluster_tasks.identity, calls)) == calls * (calls - 1) // 2


def measure(peer: Peer, cfg: dict[str, Any]) -> Samples:
    samples: Samples = {}
    warm_up(peer, cfg["workers"], cfg["warmup"])

    round_trips = []
    for _ in range(cfg["round_trips"]):
        start = now_ns()
        value = peer.call(cluster_tasks.identity, 7)
        round_trips.append(now_ns() - start)
        assert value == 7
    samples["round_trip_ns"] = round_trips

    out, back = [], []
    for _ in range(cfg["stamped"]):
        sent = monotonic_ns()
        ran = peer.call(cluster_tasks.stamp, 0)
        returned = monotonic_ns()
        out.append(ran - sent)
        back.append(returned - ran)
    samples["leg_out_ns"] = out
    samples["leg_back_ns"] = back

    n = cfg["submit_n"]
    start = now_ns()
    total = sum(peer.call_all(cluster_tasks.identity, n))
    samples["task_ns"] = [(now_ns() - start) / n]
    assert total == n * (n - 1) // 2

    n = cfg["map_n"]
    start = now_ns()
    mapped = peer.map(cluster_tasks.identity, n)
    elapsed = now_ns() - start
    if mapped is not None:
        assert sum(mapped) == n * (n - 1) // 2
        samples["map_ns"] = [elapsed / n]
    return samples


def main() -> int:
    if len(sys.argv) != 3 or sys.argv[1] not in PEERS:
        print(f"usage: {sys.argv[0]} {{{'|'.join(PEERS)}}} CONFIG-JSON", file=sys.stderr)
        return 2
    cfg = json.loads(sys.argv[2])
    with PEERS[sys.argv[1]](cfg) as (peer, version):
        results = measure(peer, cfg)
    print(
        json.dumps(
            {
                "python": sys.version.split()[0],
                "version": version,
                "results": results,
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
