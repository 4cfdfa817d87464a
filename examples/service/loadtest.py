"""A bounded load test of the example service on 127.0.0.1.

Starts ``onnxplain_service`` on the bundled digits CNN, runs ``--clients`` concurrent clients that
send ``--requests`` requests in all (a share ``--bad`` of them malformed: an unknown method, a shape
that does not fit, broken JSON, a missing shape), checks every answer (valid ones against
onnxplain's Python API, bad ones for a 4xx with a JSON error), samples the service's resident
memory, stops the service and prints requests/s, latency percentiles and the memory samples.
Exit status 0 only when every answer was right and memory stayed flat.

    python examples/service/loadtest.py build-service/onnxplain_service --requests 4000 --clients 16
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

import onnxplain as ox
from onnxplain.demo import MODEL_PATH, load_samples

METHODS = [("gradient", {}), ("lrp.epsilon_plus_flat", {}), ("lrp.epsilon", {"epsilon": 0.01})]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("service", help="the built onnxplain_service executable")
    ap.add_argument("--requests", type=int, default=4000)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--bad", type=float, default=0.1, help="share of malformed requests")
    args = ap.parse_args(argv)

    x, _ = load_samples()
    batches = [np.ascontiguousarray(x[i:i + 2]) for i in range(0, 40, 2)]
    model = ox.load(MODEL_PATH, threads=1)
    expected = {(m, i): ox.explainer(model, m, **p).explain(b) for m, p in METHODS for i, b in enumerate(batches)}

    port = free_port()
    proc = subprocess.Popen([args.service, str(MODEL_PATH), "--port", str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(100):
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                c.request("GET", "/health")
                if c.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.1)
        else:
            print("the service did not start:", proc.stderr.read() if proc.stderr else "", file=sys.stderr)
            return 1
        rng = np.random.default_rng(0)
        plan = [(int(rng.integers(len(METHODS))), int(rng.integers(len(batches))), bool(rng.random() < args.bad),
                 int(rng.integers(4))) for _ in range(args.requests)]
        latencies: list[float] = []
        wrong: list[str] = []
        memory: list[int] = [rss_kib(proc.pid)]
        lock = threading.Lock()
        next_job = [0]

        def client() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            while True:
                with lock:
                    k = next_job[0]
                    next_job[0] += 1
                if k >= len(plan):
                    return
                mi, bi, bad, kind = plan[k]
                method, params = METHODS[mi]
                b = batches[bi]
                query = f"/explain?method={method}" + "".join(f"&p.{a}={v}" for a, v in params.items())
                headers = {"Content-Type": "application/octet-stream"}
                body: bytes = b.tobytes()
                shape = ",".join(map(str, b.shape))
                if bad and kind == 0:
                    query = "/explain?method=lrp.nonsense"
                    query += f"&shape={shape}"
                elif bad and kind == 1:
                    query += "&shape=2,1,8,7"
                elif bad and kind == 2:
                    headers = {"Content-Type": "application/json"}
                    body = b'{"input": [1, 2,'
                elif bad:
                    pass  # raw body without a shape
                else:
                    query += f"&shape={shape}"
                t0 = time.perf_counter()
                conn.request("POST", query, body=body, headers=headers)
                res = conn.getresponse()
                data = res.read()
                dt = time.perf_counter() - t0
                ok = True
                if bad:
                    ok = 400 <= res.status < 500 and "error" in json.loads(data)
                else:
                    ok = res.status == 200
                    if ok:
                        got = np.asarray(json.loads(data)["relevance"], np.float32).reshape(b.shape)
                        ok = bool(np.array_equal(got, expected[(method, bi)]))
                with lock:
                    latencies.append(dt)
                    if not ok:
                        wrong.append(f"request {k}: {method} bad={bad} -> {res.status} {data[:200]!r}")
                    if len(latencies) % max(1, len(plan) // 10) == 0:
                        memory.append(rss_kib(proc.pid))

        t0 = time.perf_counter()
        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        memory.append(rss_kib(proc.pid))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    lat = np.array(latencies) * 1e3
    n_bad = sum(1 for p in plan if p[2])
    print(f"{len(plan)} requests ({n_bad} malformed) from {args.clients} clients in {wall:.2f} s: "
          f"{len(plan) / wall:.0f} requests/s")
    print(f"latency ms: p50 {np.percentile(lat, 50):.2f}, p90 {np.percentile(lat, 90):.2f}, "
          f"p99 {np.percentile(lat, 99):.2f}, max {lat.max():.2f}")
    print("service RSS MiB over the run: " + " ".join(f"{m / 1024:.1f}" for m in memory))
    steady = memory[2:] if len(memory) > 3 else memory
    flat = max(steady) - min(steady) < 16 * 1024
    print(f"wrong answers: {len(wrong)}; memory {'flat' if flat else 'GROWING'}")
    for w in wrong[:5]:
        print("  " + w)
    return 0 if not wrong and flat else 1


if __name__ == "__main__":
    sys.exit(main())
