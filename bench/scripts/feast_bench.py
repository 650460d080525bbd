"""The Python side of `quiver-bench feast` (bench/src/feast.rs starts the servers and runs this
on the client CPUs). One Feast repository on the same data, with Feast's Redis online store and
with the Quiver plugin; every measured loop is bounded in count and time, one request in flight
(a Python caller's shape). The last stdout line is one JSON object.

    feast_bench.py --dir D --quiver HOST:PORT --redis HOST:PORT --entities N --duration S \
        --runs R --training-rows T [--server-cpus LIST]
"""

import argparse
import datetime as dt
import json
import random
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

FEATURES = 20
VIEW = "bench_stats"
REFS = [f"{VIEW}:f{i}" for i in range(FEATURES)]
MAX_REQUESTS = 200_000  # per measured loop, whatever the duration


def feature_type(i):
    return "Float32" if i % 2 == 0 else "Int64"


DEFINITIONS = """
from datetime import timedelta
from feast import Entity, FeatureView, Field, FileSource
from feast.types import Float32, Int64

user = Entity(name="user", join_keys=["user_id"])
bench_stats = FeatureView(
    name="bench_stats",
    entities=[user],
    ttl=timedelta(days=2),
    schema=[SCHEMA],
    source=FileSource(path="HISTORY", timestamp_field="event_timestamp"),
)
"""


def write_history(path: Path, users: int, now: dt.datetime) -> None:
    """Three rows per user over the last day: the latest one is what serving returns."""
    rng = random.Random(7)
    ids, ts = [], []
    cols = [[] for _ in range(FEATURES)]
    for age in (20, 10, 1):
        for u in range(1, users + 1):
            ids.append(u)
            ts.append(now - dt.timedelta(hours=age, seconds=rng.randrange(3600)))
            for i in range(FEATURES):
                cols[i].append(rng.random() if i % 2 == 0 else rng.randrange(1_000_000))
    arrays = {"user_id": pa.array(ids, pa.int64()),
              "event_timestamp": pa.array(ts, pa.timestamp("us", tz="UTC"))}
    for i in range(FEATURES):
        arrays[f"f{i}"] = pa.array(cols[i], pa.float32() if i % 2 == 0 else pa.int64())
    pq.write_table(pa.table(arrays), path)


def make_repo(root: Path, name: str, online: str, history: Path) -> Path:
    repo = root / name
    repo.mkdir(parents=True)
    schema = ", ".join(f'Field(name="f{i}", dtype={feature_type(i)})' for i in range(FEATURES))
    (repo / "definitions.py").write_text(
        DEFINITIONS.replace("SCHEMA", schema).replace("HISTORY", str(history)))
    block = "".join(f"  {line}\n" for line in online.splitlines())
    (repo / "feature_store.yaml").write_text(
        f"project: bench\nregistry: {repo / 'registry.db'}\nprovider: local\n"
        f"offline_store:\n  type: file\nentity_key_serialization_version: 3\n"
        f"online_store:\n{block}")
    return repo


def feast_cli(repo: Path, *args: str) -> float:
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "feast.cli.cli", "-c", str(repo), *args],
                       capture_output=True, text=True, timeout=3600)
    if r.returncode != 0:
        raise SystemExit(f"feast {' '.join(args)} in {repo} failed:\n{r.stdout}\n{r.stderr}")
    return time.perf_counter() - t


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(sorted_us, q):
    return sorted_us[min(len(sorted_us) - 1, int(q * len(sorted_us)))]


def measure(call, batch, users, duration, check):
    """Calls `call(ids)` with `batch` random ids, sequentially, for `duration` seconds (at
    most MAX_REQUESTS calls); checks the first answer and every 64th."""
    rng = random.Random(11)
    lat = []
    deadline = time.perf_counter() + duration
    n = 0
    while n < MAX_REQUESTS:
        ids = [rng.randrange(1, users + 1) for _ in range(batch)]
        t = time.perf_counter()
        answer = call(ids)
        lat.append((time.perf_counter() - t) * 1e6)
        if n % 64 == 0:
            check(ids, answer)
        n += 1
        if t > deadline:
            break
    lat.sort()
    secs = sum(lat) / 1e6
    return {"requests": n, "p50_us": percentile(lat, 0.5), "p99_us": percentile(lat, 0.99),
            "rows_per_s": n * batch / secs, "requests_per_s": n / secs}


def median_runs(runs, f):
    results = [f() for _ in range(runs)]
    out = {}
    for k in results[0]:
        vals = sorted(r[k] for r in results)
        out[k] = vals[len(vals) // 2]
    return out


def expect(latest):
    """A checker: every answer's f0 and f1 equal the history's latest row for each id."""
    def check(ids, values):
        f0, f1 = values
        for i, u in enumerate(ids):
            want = latest[u]
            if f1[i] != want[1] or abs(f0[i] - want[0]) > 1e-6:
                raise SystemExit(f"wrong answer for user {u}: {(f0[i], f1[i])} != {want}")
    return check


def serve(repo: Path, port: int, cpus, log: Path):
    cmd = [sys.executable, "-m", "feast.cli.cli", "-c", str(repo), "serve", "-h", "127.0.0.1",
           "-p", str(port), "--workers", "1", "--no-access-log",
           # gunicorn restarts a worker after --max-requests (1000 by default), resetting the
           # connection mid-measurement.
           "--max-requests", "100000000"]
    if cpus:
        cmd = ["taskset", "-c", cpus] + cmd
    proc = subprocess.Popen(cmd, stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    return proc


def http_call(port):
    url = f"http://127.0.0.1:{port}/get-online-features"
    features = REFS

    def call(ids):
        body = json.dumps({"features": features, "entities": {"user_id": ids}}).encode()
        req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            a = json.loads(r.read())
        names = a["metadata"]["feature_names"]
        res = {n: r["values"] for n, r in zip(names, a["results"])}
        return res["f0"], res["f1"]
    return call


def wait_http(call, proc, log, timeout=180):
    deadline = time.monotonic() + timeout
    while True:
        try:
            call([1])
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"feast serve did not come up; see {log}")
            time.sleep(0.5)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dir", required=True)
    p.add_argument("--quiver", required=True)
    p.add_argument("--redis", required=True)
    p.add_argument("--entities", type=int, default=20_000)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--training-rows", type=int, default=20_000)
    p.add_argument("--server-cpus", default="")
    a = p.parse_args()

    import feast
    import quiver

    root = Path(a.dir)
    root.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    history = root / "history.parquet"
    write_history(history, a.entities, now)
    t = pq.read_table(history).to_pydict()
    latest = {}
    for u, ts, f0, f1 in zip(t["user_id"], t["event_timestamp"], t["f0"], t["f1"]):
        if u not in latest or ts > latest[u][2]:
            latest[u] = (f0, f1, ts)
    check = expect(latest)
    repos = {
        "redis": make_repo(root, "redis", f"type: redis\nconnection_string: \"{a.redis}\"", history),
        "quiver": make_repo(root, "quiver",
                            f"type: quiver.feast.QuiverOnlineStore\naddress: {a.quiver}", history),
    }
    out = {"feast_version": feast.__version__, "entities": a.entities, "features": FEATURES}
    start = (now - dt.timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%S")
    end = (now + dt.timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%S")
    for name, repo in repos.items():
        feast_cli(repo, "apply")
        out[f"materialize_s_{name}"] = feast_cli(repo, "materialize", start, end)

    def arrays(resp_dict):
        return resp_dict["f0"], resp_dict["f1"]

    # FeatureStore.get_online_features in process.
    for name, repo in repos.items():
        store = feast.FeatureStore(repo_path=str(repo))
        for w, batch in (("w1", 1), ("w2", 100)):
            call = lambda ids: arrays(store.get_online_features(  # noqa: E731
                features=REFS, entity_rows=[{"user_id": u} for u in ids]).to_dict())
            out[f"inproc_{w}_{name}"] = median_runs(a.runs, lambda: measure(
                call, batch, a.entities, a.duration, check))

    # The Python client on Quiver's own API.
    client = quiver.Client(a.quiver, timeout=30)
    for w, batch in (("w1", 1), ("w2", 100)):
        call = lambda ids: arrays(client.get_online_features(  # noqa: E731
            REFS, entities={"user_id": ids}).to_dict())
        out[f"pyclient_{w}"] = median_runs(a.runs, lambda: measure(
            call, batch, a.entities, a.duration, check))
        # The same answers as Arrow, without building Python lists of every value.
        call = lambda ids: client.get_online_features(REFS, entities={"user_id": ids})  # noqa: E731
        out[f"pyclient_arrow_{w}"] = median_runs(a.runs, lambda: measure(
            call, batch, a.entities, a.duration,
            lambda ids, r: check(ids, arrays(r.to_dict()))))

    # Feast's HTTP feature server (`feast serve`) on each store, on the server CPUs.
    for name, repo in repos.items():
        port = free_port()
        log = root / f"serve-{name}.log"
        proc = serve(repo, port, a.server_cpus, log)
        try:
            call = http_call(port)
            wait_http(call, proc, log)
            for w, batch in (("w1", 1), ("w2", 100)):
                out[f"serve_{w}_{name}"] = median_runs(a.runs, lambda: measure(
                    call, batch, a.entities, a.duration, check))
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()

    # Training sets: Feast's file offline store against quiver.get_historical_features, on the
    # same in-memory entity frame.
    import pandas as pd
    rng = random.Random(13)
    entity_df = pd.DataFrame({
        "user_id": [rng.randrange(1, a.entities + 1) for _ in range(a.training_rows)],
        "event_timestamp": [now - dt.timedelta(seconds=rng.randrange(36 * 3600))
                            for _ in range(a.training_rows)],
    })
    registry = root / "quiver-registry.toml"
    registry.write_text(
        'project = "bench"\n[[entity]]\nname = "user"\n'
        'join_keys = [{ name = "user_id", type = "int64" }]\n'
        f'[[feature_view]]\nname = "{VIEW}"\nentity = "user"\nttl = "2d"\n'
        f'source = {{ path = "{history}", timestamp_field = "event_timestamp" }}\n'
        + "".join(f'[[feature_view.feature]]\nname = "f{i}"\n'
                  f'type = "{"float32" if i % 2 == 0 else "int64"}"\n' for i in range(FEATURES)))
    store = feast.FeatureStore(repo_path=str(repos["redis"]))
    times = {"feast": [], "quiver": []}
    for _ in range(a.runs):
        t0 = time.perf_counter()
        fdf = store.get_historical_features(entity_df=entity_df, features=REFS).to_df()
        times["feast"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        qt = quiver.get_historical_features(str(registry), entity_df, REFS)
        times["quiver"].append(time.perf_counter() - t0)
    # Feast 0.67's file offline store leaves out entity rows with no feature row at or before
    # their time (an inner join); Quiver keeps them with null features (a left join, as
    # docs/semantics.md says). So rows are matched on (user_id, event_timestamp): every row
    # Feast returns must be in Quiver's output with equal values, and every other Quiver row
    # must be all null.
    key = ["user_id", "event_timestamp"]
    feats = [f"f{i}" for i in range(FEATURES)]
    fdf = fdf[key + feats].copy()
    qdf = qt.to_pandas()[key + feats].copy()
    for df in (fdf, qdf):
        df["event_timestamp"] = pd.to_datetime(df["event_timestamp"], utc=True).astype("datetime64[us, UTC]")
        for c in feats:
            df[c] = df[c].astype("float64")
    both = fdf.merge(qdf, on=key, how="outer", suffixes=("_feast", "_quiver"), indicator=True)
    matched = both[both["_merge"] == "both"]
    equal = pd.Series(True, index=matched.index)
    for c in feats:
        fv, qv = matched[f"{c}_feast"], matched[f"{c}_quiver"]
        equal &= (fv == qv) | (fv.isna() & qv.isna())
    only_quiver = both[both["_merge"] == "right_only"]
    only_quiver_null = bool(only_quiver[[f"{c}_quiver" for c in feats]].isna().all(axis=None))
    only_feast = int((both["_merge"] == "left_only").sum())
    out["historical_rows"] = a.training_rows
    out["historical_s_feast"] = sorted(times["feast"])[len(times["feast"]) // 2]
    out["historical_s_quiver"] = sorted(times["quiver"])[len(times["quiver"]) // 2]
    out["historical_rows_feast"] = len(fdf)
    out["historical_rows_quiver"] = len(qdf)
    out["historical_rows_matched_equal"] = int(equal.sum())
    out["historical_rows_matched_differing"] = int((~equal).sum())
    out["historical_rows_only_quiver"] = len(only_quiver)
    out["historical_rows_only_feast"] = only_feast
    out["historical_identical"] = bool(equal.all() and only_quiver_null and only_feast == 0)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
