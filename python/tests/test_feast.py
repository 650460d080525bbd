"""The Feast plugin end to end with the real `feast` package: one feature repository, its data
materialized by `feast materialize` and `feast materialize-incremental` into Feast's SQLite
online store and into Quiver, must give identical `get_online_features` answers for every
entity and feature: missing entities, null values and values past their TTL included."""

import datetime as dt
import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import feast
import pytest

import quiver
from conftest import Server, free_port

NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
DRIVERS = list(range(1, 21))
MISSING = [900, 901]

DEFINITIONS = '''
from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource
from feast.types import Array, Bool, Float32, Float64, Int32, Int64, String, UnixTimestamp

driver = Entity(name="driver", join_keys=["driver_id"])
customer = Entity(name="customer", join_keys=["customer_id"])

driver_stats = FeatureView(
    name="driver_stats",
    entities=[driver],
    ttl=timedelta(days=1),
    schema=[
        Field(name="conv_rate", dtype=Float32),
        Field(name="acc_rate", dtype=Float64),
        Field(name="trips", dtype=Int64),
        Field(name="rank", dtype=Int32),
        Field(name="name", dtype=String),
        Field(name="active", dtype=Bool),
        Field(name="last_trip", dtype=UnixTimestamp),
        Field(name="tags", dtype=Array(String)),
        Field(name="scores", dtype=Array(Float64)),
    ],
    source=FileSource(path="DATA/driver_stats.parquet", timestamp_field="event_timestamp",
                      created_timestamp_column="created"),
)

driver_quality = FeatureView(
    name="driver_quality",
    entities=[driver],
    ttl=timedelta(days=7),
    schema=[Field(name="rating", dtype=Float64)],
    source=FileSource(path="DATA/driver_quality.parquet", timestamp_field="event_timestamp"),
)

driver_customer = FeatureView(
    name="driver_customer",
    entities=[driver, customer],
    ttl=timedelta(days=30),
    schema=[Field(name="rides_together", dtype=Int64)],
    source=FileSource(path="DATA/driver_customer.parquet", timestamp_field="event_timestamp"),
)

driver_service = FeatureService(
    name="driver_service",
    features=[driver_stats[["trips", "name"]], driver_quality],
)
'''

STATS = ["driver_stats:conv_rate", "driver_stats:acc_rate", "driver_stats:trips",
         "driver_stats:rank", "driver_stats:name", "driver_stats:active",
         "driver_stats:last_trip", "driver_stats:tags", "driver_stats:scores"]


def stats_rows(drivers, at, salt):
    rows = []
    for d in drivers:
        # Driver 5's latest row is three days old: past the view's one-day TTL.
        ts = at - dt.timedelta(days=3) if d == 5 else at - dt.timedelta(minutes=d)
        rows.append({
            "driver_id": d,
            "event_timestamp": ts,
            "created": ts,
            "conv_rate": d / 40 + salt,
            "acc_rate": d / 7 + salt,
            "trips": d * 10 + int(salt * 100),
            "rank": d,
            # Driver 7 has a null name; driver 8 null lists.
            "name": None if d == 7 else f"driver-{d}-{salt}",
            "active": d % 2 == 0,
            "last_trip": ts - dt.timedelta(hours=1),
            "tags": None if d == 8 else [f"t{d}", "x"],
            "scores": None if d == 8 else [d * 0.5, salt],
        })
    return rows


STATS_SCHEMA = pa.schema([
    ("driver_id", pa.int64()), ("event_timestamp", pa.timestamp("us", tz="UTC")),
    ("created", pa.timestamp("us", tz="UTC")), ("conv_rate", pa.float32()),
    ("acc_rate", pa.float64()), ("trips", pa.int64()), ("rank", pa.int32()),
    ("name", pa.string()), ("active", pa.bool_()),
    ("last_trip", pa.timestamp("us", tz="UTC")), ("tags", pa.list_(pa.string())),
    ("scores", pa.list_(pa.float64())),
])


def write_data(data: Path, at: dt.datetime, salt: float) -> None:
    """The repository's sources as of `at`: every driver once (a newer row each call)."""
    old = data / "driver_stats.parquet"
    new = pa.Table.from_pylist(stats_rows(DRIVERS, at, salt), schema=STATS_SCHEMA)
    if old.exists():
        new = pa.concat_tables([pq.read_table(old), new])
    pq.write_table(new, old)
    pq.write_table(pa.table({
        "driver_id": pa.array(DRIVERS[:15], pa.int64()),
        "event_timestamp": pa.array([at - dt.timedelta(hours=1)] * 15, pa.timestamp("us", tz="UTC")),
        "rating": [d / 3 for d in DRIVERS[:15]],
    }), data / "driver_quality.parquet")
    pq.write_table(pa.table({
        "driver_id": pa.array([1, 1, 2], pa.int64()),
        "customer_id": ["c1", "c2", "c1"],
        "event_timestamp": pa.array([at - dt.timedelta(hours=2)] * 3, pa.timestamp("us", tz="UTC")),
        "rides_together": [3, 4, 5],
    }), data / "driver_customer.parquet")


def make_repo(root: Path, name: str, online_store: str) -> Path:
    repo = root / name
    repo.mkdir()
    (repo / "definitions.py").write_text(DEFINITIONS.replace("DATA", str(root / "data")))
    store = "".join(f"  {line}\n" for line in online_store.splitlines())
    (repo / "feature_store.yaml").write_text(
        f"project: parity\nregistry: {repo / 'registry.db'}\nprovider: local\n"
        f"offline_store:\n  type: file\nentity_key_serialization_version: 3\n"
        f"online_store:\n{store}")
    return repo


def feast_cli(repo: Path, *args: str) -> str:
    r = subprocess.run([sys.executable, "-m", "feast.cli.cli", "-c", str(repo), *args],
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise AssertionError(f"feast {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}")
    return r.stdout


@pytest.fixture(scope="module")
def repos(tmp_path_factory):
    root = tmp_path_factory.mktemp("feast")
    (root / "data").mkdir()
    (root / "empty.toml").write_text('project = "parity"\n')
    server = Server(root, registry=root / "empty.toml")
    sqlite = make_repo(root, "sqlite", f"type: sqlite\npath: {root / 'online.db'}")
    on_quiver = make_repo(root, "quiver",
                          f"type: quiver.feast.QuiverOnlineStore\naddress: {server.address}")
    strict = make_repo(root, "strict", "type: quiver.feast.QuiverOnlineStore\n"
                       f"address: {server.address}\nenforce_ttl: true")
    start = (NOW - dt.timedelta(days=10)).strftime("%Y-%m-%dT%H:%M:%S")
    first = NOW - dt.timedelta(hours=3)
    write_data(root / "data", first, 0.0)
    for repo in (sqlite, on_quiver):
        feast_cli(repo, "apply")
        feast_cli(repo, "materialize", start, (first + dt.timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%S"))
    # Newer rows, then an incremental materialization on both.
    write_data(root / "data", NOW - dt.timedelta(minutes=30), 0.5)
    for repo in (sqlite, on_quiver):
        feast_cli(repo, "materialize-incremental", NOW.strftime("%Y-%m-%dT%H:%M:%S"))
    yield {"root": root, "server": server, "sqlite": sqlite, "quiver": on_quiver, "strict": strict}
    server.stop()


def online(repo: Path, features, rows, **kw) -> dict:
    store = feast.FeatureStore(repo_path=str(repo))
    return store.get_online_features(features=features, entity_rows=rows, **kw).to_dict(
        include_event_timestamps=True)


def test_feast_apply_builds_the_quiver_registry(repos):
    reg = quiver.Client(repos["server"].address).registry()
    views = {v["name"]: v for v in reg["feature_view"]}
    assert set(views) == {"driver_stats", "driver_quality", "driver_customer"}
    assert [f["type"] for f in views["driver_stats"]["feature"]] == [
        "float32", "float64", "int64", "int32", "string", "bool", "timestamp",
        "list<string>", "list<float64>"]
    entities = {e["name"]: e for e in reg["entity"]}
    assert [k["name"] for k in entities["driver__customer"]["join_keys"]] == ["driver_id", "customer_id"]
    assert views["driver_stats"]["tags"]["feast_ttl"] == "86400s"


def test_every_entity_and_feature_matches_feast_sqlite(repos):
    rows = [{"driver_id": d} for d in DRIVERS + MISSING]
    features = STATS + ["driver_quality:rating"]
    want = online(repos["sqlite"], features, rows)
    got = online(repos["quiver"], features, rows)
    assert got == want
    # The comparison is not vacuous: newest values from the incremental run, nulls, misses.
    assert got["trips"][0] == 60 and got["name"][6] is None and got["trips"][-1] is None
    assert got["rating"][15] is None and got["rating"][0] == pytest.approx(1 / 3)


def test_full_feature_names_services_and_composite_keys_match(repos):
    rows = [{"driver_id": d} for d in [3, 5, 7, 900, 3]]
    for kw in ({"full_feature_names": True}, {}):
        assert online(repos["quiver"], STATS, rows, **kw) == online(repos["sqlite"], STATS, rows, **kw)
    for repo in ("sqlite", "quiver"):
        store = feast.FeatureStore(repo_path=str(repos[repo]))
        repos[f"service_{repo}"] = store.get_online_features(
            features=store.get_feature_service("driver_service"), entity_rows=rows).to_dict()
    assert repos["service_quiver"] == repos["service_sqlite"]
    pairs = [{"driver_id": 1, "customer_id": "c1"}, {"driver_id": 1, "customer_id": "c2"},
             {"driver_id": 2, "customer_id": "c1"}, {"driver_id": 2, "customer_id": "c9"}]
    want = online(repos["sqlite"], ["driver_customer:rides_together"], pairs)
    assert online(repos["quiver"], ["driver_customer:rides_together"], pairs) == want
    assert want["rides_together"] == [3, 4, 5, None]


def test_enforce_ttl_withholds_values_past_their_ttl(repos):
    # A server of its own: with TTLs applied the server also reclaims expired values.
    root = repos["root"]
    server = Server(root / "strict", registry=root / "empty.toml")
    try:
        (root / "strict" / "feature_store.yaml").write_text(
            (root / "strict" / "feature_store.yaml").read_text()
            .replace(repos["server"].address, server.address))
        feast_cli(repos["strict"], "apply")
        start = (NOW - dt.timedelta(days=10)).strftime("%Y-%m-%dT%H:%M:%S")
        feast_cli(repos["strict"], "materialize", start, NOW.strftime("%Y-%m-%dT%H:%M:%S"))
        rows = [{"driver_id": 4}, {"driver_id": 5}]
        got = online(repos["strict"], ["driver_stats:trips", "driver_quality:rating"], rows)
        assert got["trips"] == [90, None]  # driver 5's row is three days old, the TTL one day
        assert got["rating"][0] == pytest.approx(4 / 3)
        # Feast's own semantics serve it.
        assert online(repos["sqlite"], ["driver_stats:trips"], rows)["trips"] == [90, 50]
    finally:
        server.stop()


def test_a_feast_type_quiver_cannot_store_fails_feast_apply_naming_the_feature(repos, tmp_path):
    repo = make_repo(repos["root"], "bad", f"type: quiver.feast.QuiverOnlineStore\n"
                     f"address: {repos['server'].address}")
    (repo / "definitions.py").write_text(DEFINITIONS.replace("DATA", str(repos["root"] / "data"))
                                         .replace("dtype=Int32)", "dtype=Map)")
                                         .replace("UnixTimestamp\n", "UnixTimestamp, Map\n"))
    r = subprocess.run([sys.executable, "-m", "feast.cli.cli", "-c", str(repo), "apply"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode != 0
    assert "driver_stats:rank" in r.stdout + r.stderr
    # Nothing changed on the server.
    views = {v["name"]: v for v in quiver.Client(repos["server"].address).registry()["feature_view"]}
    assert [f["type"] for f in views["driver_stats"]["feature"]][3] == "int32"


def test_feast_serve_answers_from_quiver_like_sqlite(repos):
    body = json.dumps({"features": STATS[:5], "entities": {"driver_id": [1, 7, 900]}}).encode()
    answers = {}
    for name in ("sqlite", "quiver"):
        port = free_port()
        log = open(repos["root"] / f"serve-{name}.log", "wb")
        proc = subprocess.Popen([sys.executable, "-m", "feast.cli.cli", "-c", str(repos[name]),
                                 "serve", "-h", "127.0.0.1", "-p", str(port), "--workers", "1"],
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    req = urllib.request.Request(f"http://127.0.0.1:{port}/get-online-features",
                                                 data=body, headers={"Content-Type": "application/json"})
                    with urllib.request.urlopen(req, timeout=10) as r:
                        answers[name] = json.loads(r.read())
                    break
                except OSError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise AssertionError(f"feast serve did not answer; see {log.name}")
                    time.sleep(0.5)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
    # The server orders columns as it likes; event times are compared in process above.
    by_name = {name: {f: (r["values"], r["statuses"]) for f, r in
                      zip(a["metadata"]["feature_names"], a["results"])}
               for name, a in answers.items()}
    assert by_name["quiver"] == by_name["sqlite"]
    assert by_name["quiver"]["name"] == (["driver-1-0.5", None, None],
                                         ["PRESENT", "PRESENT", "NOT_FOUND"])
