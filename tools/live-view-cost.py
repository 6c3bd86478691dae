#!/usr/bin/env python3
"""CPU cost of the console's live view (periodic JPEG from GET /api/v1/cameras/{id}/latest.jpg).

Usage: tools/live-view-cost.py PID BASE_URL TOKEN CAMERA [ROUNDS]
  PID       the running `gridwatch run` process
  BASE_URL  e.g. http://127.0.0.1:8080

Per round: the appliance's CPU use is sampled for 20 s with no client (baseline), then 300
latest.jpg requests are made back to back; the CPU the process used beyond its baseline,
divided by the requests, is the cost of one live-view frame. Prints one JSON line per round.
"""
import json
import os
import sys
import time
import urllib.request

pid, base, token, camera = int(sys.argv[1]), sys.argv[2].rstrip("/"), sys.argv[3], sys.argv[4]
rounds = int(sys.argv[5]) if len(sys.argv) > 5 else 3


def cpu_secs():
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def get(path):
    req = urllib.request.Request(base + path, headers={"Authorization": "Bearer " + token})
    return urllib.request.urlopen(req, timeout=10).read()


for r in range(rounds):
    c0, t0 = cpu_secs(), time.time()
    time.sleep(20)
    baseline = (cpu_secs() - c0) / (time.time() - t0)
    n, size, lat = 300, 0, []
    c0, t0 = cpu_secs(), time.time()
    for _ in range(n):
        a = time.time()
        size += len(get(f"/api/v1/cameras/{camera}/latest.jpg"))
        lat.append(time.time() - a)
    elapsed = time.time() - t0
    used = cpu_secs() - c0 - baseline * elapsed
    lat.sort()
    print(json.dumps({
        "round": r,
        "baseline_cores": round(baseline, 3),
        "cpu_ms_per_frame": round(used / n * 1000, 2),
        "kib_per_frame": round(size / n / 1024, 1),
        "latency_p50_ms": round(lat[n // 2] * 1000, 1),
        "latency_p95_ms": round(lat[int(n * 0.95)] * 1000, 1),
    }), flush=True)
