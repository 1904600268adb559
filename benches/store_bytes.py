"""Bytes a finished example order leaves in the store, by keyspace.

Runs `runner run` (combined mode, the example manifests, default retention) on a
throwaway nats-server, places N orders with UUID event ids, waits for every MarkPaid at a
stand-in Gateway, drains the runner, then reads the LMDB store key by key. Works on the
store of any Runner version (older ones included), which is how the README's
before/after figures were taken:

    pip install nats-py lmdb
    cargo build --release
    python3 benches/store_bytes.py target/release/runner 3000

Needs nats-server on PATH or in RUNNER_NATS_SERVER_BIN.
"""
import asyncio, json, os, signal, socket, subprocess, sys, tempfile, threading, time, uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import lmdb, nats

binary, n = sys.argv[1], int(sys.argv[2])
repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
tmp = tempfile.mkdtemp(prefix="measure-")
def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p
port = free_port()
nats_bin = os.environ.get("RUNNER_NATS_SERVER_BIN", "nats-server")
nats_srv = subprocess.Popen([nats_bin, "-js", "-p", str(port), "-sd", f"{tmp}/js"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
paid = set(); lock = threading.Lock()
class Gw(BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        with lock: paid.add(body.get("aggregate_id"))
        self.send_response(202); self.send_header("content-length", "0"); self.end_headers()
    def log_message(self, *a): pass
gw = ThreadingHTTPServer(("127.0.0.1", 0), Gw)
threading.Thread(target=gw.serve_forever, daemon=True).start()
cfg = {"mode": "combined",
       "nats": {"url": f"nats://127.0.0.1:{port}", "create_aggregate_stream": True},
       "storage": {"path": f"{tmp}/store"},
       "relay": {"gateway_url": f"http://127.0.0.1:{gw.server_address[1]}"},
       "effects": {"claims_bucket": ""},
       "ops": {"listen": ""},
       "manifests": {"sagas": [f"{repo}/manifests/example/sagas.yaml"],
                     "effects": [f"{repo}/manifests/example/effects.yaml"]}}
open(f"{tmp}/cfg.json", "w").write(json.dumps(cfg))
time.sleep(0.5)
runner = subprocess.Popen([binary, "run", "--config", f"{tmp}/cfg.json"], env={**os.environ, "RUNNER_LOG": "warn"})
time.sleep(2)
async def publish():
    nc = await nats.connect(f"nats://127.0.0.1:{port}")
    js = nc.jetstream()
    for i in range(n):
        order = f"o-{1000000 + i}"
        ev = {"event_id": str(uuid.uuid4()), "tenant_id": "acme", "aggregate_type": "order",
              "aggregate_id": order, "event_type": "OrderPlaced", "version": 1,
              "occurred_at": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
              "payload": {"total": 1000 + i % 5000, "currency": "EUR", "customer_id": f"c-{i % 977}"},
              "metadata": {"correlation_id": str(uuid.uuid4()),
                           "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}
        await js.publish(f"aggregate.acme.order.OrderPlaced", json.dumps(ev).encode(),
                         headers={"x-tenant-id": "acme", "Nats-Msg-Id": ev["event_id"]})
    await nc.close()
asyncio.run(publish())
deadline = time.time() + 120
while time.time() < deadline and len(paid) < n: time.sleep(0.2)
time.sleep(2)
runner.send_signal(signal.SIGTERM); runner.wait(timeout=60)
nats_srv.terminate()
env = lmdb.open(f"{tmp}/store", readonly=True, lock=False, map_size=1 << 34)
spaces = {}
with env.begin() as txn:
    for k, v in txn.cursor():
        sp = k.split(b":")[0].decode()
        c = spaces.setdefault(sp, [0, 0, 0])
        c[0] += 1; c[1] += len(k); c[2] += len(v)
st = env.stat(); info = env.info()
print(f"orders {n}, paid {len(paid)}")
total = 0
for sp, (cnt, kb, vb) in sorted(spaces.items()):
    if sp in ("meta", "checkpoint"): continue
    total += kb + vb
    print(f"{sp:12} keys {cnt:6} ({cnt/n:5.2f}/order)  key bytes/order {kb/n:7.1f}  value bytes/order {vb/n:7.1f}")
print(f"keys+values per finished order: {total/n:.0f} B")
pages = (st["branch_pages"] + st["leaf_pages"] + st["overflow_pages"])
print(f"B-tree pages {pages} x {st['psize']} = {pages*st['psize']/n:.0f} B per order (file {info['last_pgno']+1} pages)")
env.close()
import shutil
shutil.rmtree(tmp, ignore_errors=True)
