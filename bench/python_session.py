"""The Python async client's session path at N in flight, one process, and
the ceiling of its transport.

    .tools/venv/bin/python bench/python_session.py [--inflight 64] [--seconds 5] [--runs 2]

Starts a ratequeue server (``server/dist/main.js``: run ``npm run build``
first; one resource ``bench`` without limits, so every acquire is granted at
once) and a raw echo server (grpc-js, one bidi method with identity
serialization: bytes in, the same bytes out), then alternates, ``--runs``
times each:

- ``session``: ``inflight`` asyncio tasks in one ``asyncio.run``, each
  looping ``lease = await client.acquire_lease("bench"); await
  lease.release()`` through ``ratequeue.aio.Client``: acquire+release pairs/s,
  and the client process's CPU time per pair (both threads: the caller's
  loop and the ratequeue loop), steadier than pairs/s on a busy machine;
- ``echo``: one ``grpc.aio`` bidi stream to the echo server with
  ``inflight`` messages in flight (a read is followed by a write): messages/s,
  what one grpc.aio message costs in this process, the ceiling of a client
  that sends one message per operation.

Each run prints one JSON line; the last line sums them up: the best of each
mode and ``ratio``, the session's messages/s (two per pair, one each way
per operation) over the echo's. A ratio above 1 means the session sends
fewer gRPC messages than operations (batches). ``--url`` measures a server
that is already running instead (``--mode session``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import grpc.aio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "clients" / "python" / "src"))

import ratequeue.aio as rq  # noqa: E402

# The raw echo: a grpc-js server (the stack of the real server) with one
# bidi method whose messages are Buffers, written straight back.
ECHO_PATH = "/bench.RawEcho/Echo"
ECHO_SERVER_JS = """
const { Server, ServerCredentials } = require("@grpc/grpc-js");
const identity = (b) => b;
const server = new Server();
server.addService(
  { echo: { path: "%s", requestStream: true, responseStream: true, requestSerialize: identity,
            requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity } },
  { echo: (call) => { call.on("data", (b) => call.write(b)); call.on("end", () => call.end()); } },
);
server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (err, port) => {
  if (err) throw err;
  console.log(JSON.stringify({ msg: "listening", port }));
});
process.on("SIGTERM", () => server.forceShutdown());
""" % ECHO_PATH


def start(args) -> "tuple[subprocess.Popen, int]":
    """Starts a node process that prints ``{"msg": "listening", "port": P}``."""
    proc = subprocess.Popen(["node", *args], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    for line in proc.stdout:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("msg") == "listening":
            return proc, int(entry["port"])
    raise SystemExit(f"node {args[0]} exited with {proc.wait()}")


async def session_run(url: str, inflight: int, seconds: float) -> dict:
    client = rq.Client(url)
    count = 0
    stop = False

    async def loop() -> None:
        nonlocal count
        while not stop:
            lease = await client.acquire_lease("bench")
            await lease.release()
            count += 1

    tasks = [asyncio.create_task(loop()) for _ in range(inflight)]
    await asyncio.sleep(min(1.0, seconds / 4))  # warm up: the stream is open and busy
    start_count, started, cpu = count, time.perf_counter(), time.process_time()
    await asyncio.sleep(seconds)
    done = count - start_count
    pairs = done / (time.perf_counter() - started)
    cpu_us = (time.process_time() - cpu) / max(done, 1) * 1e6
    stop = True
    await asyncio.gather(*tasks)
    await client.close()
    return {"mode": "session", "inflight": inflight, "pairsPerSec": round(pairs), "messagesPerSec": round(2 * pairs),
            "cpuUsPerPair": round(cpu_us, 1)}


async def echo_run(port: int, inflight: int, seconds: float) -> dict:
    # A message of the size of an acquire: a request id and a resource name.
    payload = b"\x08\x01\x12\x07\n\x05bench"
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.stream_stream(ECHO_PATH)()  # no serializers: bytes
        for _ in range(inflight):
            await call.write(payload)
        count = 0
        deadline = started = None
        warmup = time.perf_counter() + min(1.0, seconds / 4)
        while True:
            await call.read()
            now = time.perf_counter()
            if started is None and now >= warmup:
                started, count, deadline = now, 0, now + seconds
            count += 1
            if deadline is not None and now >= deadline:
                break
            await call.write(payload)
        rate = count / (time.perf_counter() - started)
        call.cancel()
    return {"mode": "echo", "inflight": inflight, "messagesPerSec": round(rate)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--inflight", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=5.0, help="length of each run (after a warm-up)")
    ap.add_argument("--runs", type=int, default=2, help="runs of each mode, alternating")
    ap.add_argument("--mode", choices=["both", "session", "echo"], default="both")
    ap.add_argument("--url", help="a running ratequeue server with a resource 'bench' (instead of starting one)")
    args = ap.parse_args()

    procs = []
    try:
        url = args.url
        if url is None and args.mode != "echo":
            config = Path(tempfile.mkdtemp(prefix="ratequeue-pybench-")) / "bench.json"
            config.write_text(json.dumps({"resources": {"bench": {"max_queue": 100000}}}))
            proc, port = start([str(ROOT / "server" / "dist" / "main.js"), "serve", "--port", "0",
                                "--http-port", "off", "--config", str(config)])
            procs.append(proc)
            url = f"http://127.0.0.1:{port}"
        echo_port = None
        if args.mode != "session":
            proc, echo_port = start(["-e", ECHO_SERVER_JS])
            procs.append(proc)
        best = {}
        for _ in range(args.runs):
            for mode in ("session", "echo"):
                if args.mode not in ("both", mode):
                    continue
                if mode == "session":
                    result = asyncio.run(session_run(url, args.inflight, args.seconds))
                else:
                    result = asyncio.run(echo_run(echo_port, args.inflight, args.seconds))
                print(json.dumps(result), flush=True)
                best[mode] = max(best.get(mode, 0), result["messagesPerSec"])
        summary = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0], "grpcio": grpc.__version__},
                   "inflight": args.inflight, "seconds": args.seconds, "runs": args.runs}
        if "session" in best:
            summary["session_pairsPerSec"] = round(best["session"] / 2)
        if "echo" in best:
            summary["echo_messagesPerSec"] = best["echo"]
        if len(best) == 2:
            summary["ratio"] = round(best["session"] / best["echo"], 2)
        print(json.dumps(summary), flush=True)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait()


if __name__ == "__main__":
    main()
