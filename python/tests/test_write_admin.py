"""Writes from Arrow, pandas and rows, the streaming writer, and the administrative calls
(registry, apply, stats, checkpoint, snapshots) against a real server."""

import datetime as dt

import pandas as pd
import pyarrow as pa
import pytest

import quiver
from conftest import NOW, REPO

# Users 1000+ are this module's own, so the read tests' data is left as it is.
FEATURES = ["user_stats:clicks", "user_stats:country", "user_stats:amount", "user_stats:blob"]


def stats_rows(users, ts, clicks=lambda u: u):
    return {
        "user_id": users,
        "event_timestamp": [dt.datetime.fromtimestamp(ts, dt.timezone.utc)] * len(users),
        "clicks": [clicks(u) for u in users],
        "logins": pa.array([1] * len(users), pa.int32()),
        "ctr": pa.array([0.5] * len(users), pa.float32()),
        "amount": [u * 0.25 for u in users],
        "verified": [True] * len(users),
        "last_login": [dt.datetime.fromtimestamp(ts, dt.timezone.utc)] * len(users),
        "country": [f"w{u}" for u in users],
        "blob": [bytes([u % 256]) for u in users],
        "recent": [u for u in users],
    }


def test_a_pyarrow_table_writes_and_reads_back(client):
    users = [1000, 1001, 1002]
    r = client.write("user_stats", pa.table(stats_rows(users, NOW - 30)))
    assert r["rows"] == 3 and r["wal_sequence"] > 0
    d = client.get_online_features(FEATURES, entities={"user_id": users}).to_dict()
    assert d["clicks"] == users
    assert d["country"] == ["w1000", "w1001", "w1002"]
    assert d["amount"] == [250.0, 250.25, 250.5]
    assert d["blob"] == [bytes([1000 % 256]), bytes([1001 % 256]), bytes([1002 % 256])]


def test_pandas_and_row_lists_are_accepted(client):
    df = pa.table(stats_rows([1010, 1011], NOW - 30)).to_pandas()
    assert isinstance(df, pd.DataFrame)
    client.write("user_stats", df)
    rows = pa.table(stats_rows([1012], NOW - 30, clicks=lambda u: 7)).to_pylist()
    client.write("user_stats", rows)
    d = client.get_online_features(["user_stats:clicks"], entities={"user_id": [1010, 1011, 1012]})
    assert d.to_dict()["clicks"] == [1010, 1011, 7]


def test_the_newest_row_of_an_entity_wins_within_a_write_and_across_writes(client):
    older = stats_rows([1020], NOW - 100, clicks=lambda u: 1)
    newer = stats_rows([1020], NOW - 50, clicks=lambda u: 2)
    both = pa.concat_tables([pa.table(newer), pa.table(older)])
    client.write("user_stats", both)
    client.write("user_stats", pa.table(stats_rows([1020], NOW - 200, clicks=lambda u: 3)))
    r = client.get_online_features(["user_stats:clicks"], entities={"user_id": [1020]})
    assert r.to_dict()["clicks"] == [2]
    assert r.event_timestamps["clicks"] == [dt.datetime.fromtimestamp(NOW - 50, dt.timezone.utc)]


def test_the_streaming_writer_sends_chunk_by_chunk(client):
    with client.writer("user_stats") as w:
        for start in range(1100, 1130, 10):
            w.write(pa.table(stats_rows(list(range(start, start + 10)), NOW - 30)))
    assert w.rows == 30 and w.batches == 3
    r = client.get_online_features(["user_stats:clicks"], entities={"user_id": [1100, 1129]})
    assert r.to_dict()["clicks"] == [1100, 1129]


def test_bad_writes_raise_naming_the_column_and_write_nothing(client):
    rows = stats_rows([1200, 1201], NOW - 30)
    rows["user_id"] = [1200, None]
    with pytest.raises(quiver.QuiverError) as e:
        client.write("user_stats", pa.table(rows))
    assert e.value.code == "INVALID_ARGUMENT" and "user_id" in e.value.message
    rows = stats_rows([1200], NOW - 30)
    rows["clicks"] = ["not a number"]
    with pytest.raises(quiver.QuiverError) as e:
        client.write("user_stats", pa.table(rows))
    assert "clicks" in e.value.message
    rows = stats_rows([1200], NOW - 30)
    del rows["country"]
    with pytest.raises(quiver.QuiverError) as e:
        client.write("user_stats", pa.table(rows))
    assert "country" in e.value.message
    with pytest.raises(quiver.QuiverError) as e:
        client.write("no_such_view", pa.table(stats_rows([1200], NOW - 30)))
    assert "no_such_view" in e.value.message
    with pytest.raises(quiver.QuiverError):
        client.write("user_stats", 42)
    r = client.get_online_features(["user_stats:clicks"], entities={"user_id": [1200]})
    assert r.statuses["clicks"] == ["NOT_FOUND"]


def test_registry_apply_and_stats(client):
    reg = client.registry()
    assert reg["version"] >= 0
    assert {v["name"] for v in reg["feature_view"]} >= {"user_stats", "user_profile"}
    same = client.apply(reg["toml"], dry_run=True)
    assert same["applied"] is False and same["changes"] == []
    smaller = reg["toml"].replace('name = "user_profile"', 'name = "user_profile_renamed"', 1)
    with pytest.raises(quiver.QuiverError) as e:
        client.apply(smaller)
    assert e.value.code in ("FAILED_PRECONDITION", "INVALID_ARGUMENT")
    assert "user_profile" in e.value.message
    assert client.registry()["version"] == reg["version"]
    with pytest.raises(quiver.QuiverError) as e:
        client.apply("this is not toml")
    assert e.value.code == "INVALID_ARGUMENT"
    s = client.stats(["user_stats"])
    assert [v["view"] for v in s["views"]] == ["user_stats"]
    assert s["views"][0]["memory_entities"] >= 5
    assert s["registry_version"] == reg["version"]
    assert s["wal"]["last_sequence"] >= s["wal"]["synced_sequence"]


def test_checkpoint_then_snapshot_upload_and_load(tmp_path):
    # A server of its own: loading a snapshot replaces the view's checkpointed data, which the
    # other tests read from the shared server.
    from conftest import Server

    (tmp_path / "srv").mkdir()
    own = Server(tmp_path / "srv")
    try:
        client = quiver.Client(own.address, timeout=10)
        client.write("user_stats", pa.table(stats_rows([1000], NOW - 30)))
        snapshot_round_trip(client, tmp_path)
    finally:
        own.stop()


def snapshot_round_trip(client, tmp_path):
    c = client.checkpoint()
    assert c["checkpoint_sequence"] > 0
    assert "user_stats" in {f["view"] for f in c["snapshots"]}
    # A snapshot built offline by `quiver materialize --out`, uploaded, then loaded by path.
    snap = tmp_path / "user_stats.qsnap"
    hist = tmp_path / "hist.parquet"
    import pyarrow.parquet as pq
    pq.write_table(pa.table(stats_rows([1300, 1301], NOW - 30, clicks=lambda u: u + 1)), hist)
    quiver.materialize(REPO / "tests" / "fixtures" / "e2e-registry.toml", "user_stats",
                       out=str(snap), history={"user_stats": hist})
    up = client.upload_snapshot("user_stats", snap)
    assert up["entities"] == 2 and up["stored_bytes"] > 0
    r = client.get_online_features(["user_stats:clicks"], entities={"user_id": [1300, 1301, 1000]})
    assert r.to_dict()["clicks"] == [1301, 1302, None]  # the loaded snapshot replaces the checkpointed one
    with pytest.raises(quiver.QuiverError) as e:
        client.upload_snapshot("user_profile", snap)
    assert "user_profile" in e.value.message or "user_stats" in e.value.message
    snap2 = tmp_path / "again.qsnap"
    quiver.materialize(REPO / "tests" / "fixtures" / "e2e-registry.toml", "user_stats",
                       out=str(snap2), history={"user_stats": hist})
    loaded = client.load_snapshot("user_stats", str(snap2))
    assert loaded["entities"] == 2
    with pytest.raises(quiver.QuiverError) as e:
        client.load_snapshot("user_stats", str(tmp_path / "missing.qsnap"))
    assert "missing.qsnap" in e.value.message


def test_vectors_and_lists_write_and_read_back(client):
    ts = dt.datetime.fromtimestamp(NOW - 30, dt.timezone.utc)
    table = pa.table({
        "user_id": pa.array([1400, 1401], pa.int64()),
        "event_timestamp": pa.array([ts, ts], pa.timestamp("us", tz="UTC")),
        "embedding": pa.array([[0.5, -1.0, 2.0, 0.0], None], pa.list_(pa.float32(), 4)),
        "tags": pa.array([["a", "b"], []], pa.list_(pa.string())),
        "scores": pa.array([[1.5], [2.5, 3.5]], pa.list_(pa.float64())),
        "tokens": pa.array([[b"\x00\xff"], None], pa.list_(pa.binary())),
    })
    client.write("user_embedding", table)
    refs = ["user_embedding:embedding", "user_embedding:tags", "user_embedding:scores",
            "user_embedding:tokens"]
    r = client.get_online_features(refs, entities={"user_id": [1400, 1401]})
    d = r.to_dict()
    assert d["embedding"] == [[0.5, -1.0, 2.0, 0.0], None]
    assert d["tags"] == [["a", "b"], []]
    assert d["scores"] == [[1.5], [2.5, 3.5]]
    assert d["tokens"] == [[b"\x00\xff"], None]
    assert r.statuses["embedding"] == ["PRESENT", "NULL_VALUE"]
    t = r.to_arrow()
    vector = t.schema.field("embedding").type
    assert (vector.list_size, vector.value_type) == (4, pa.float32())
    # A vector of the wrong dimension is refused naming the feature.
    bad = table.set_column(2, "embedding", pa.array([[1.0, 2.0]] * 2, pa.list_(pa.float32(), 2)))
    with pytest.raises(quiver.QuiverError) as e:
        client.write("user_embedding", bad)
    assert "embedding" in e.value.message


def test_polars_frames_are_accepted(client):
    import polars as pl
    import pyarrow.parquet as pq
    from conftest import REPO

    ts = dt.datetime.fromtimestamp(NOW - 30, dt.timezone.utc)
    client.write("user_profile", pl.DataFrame({
        "user_id": [1500, 1501], "event_timestamp": [ts, ts], "country": ["pl", None],
        "age": [33, 44]}))
    d = client.get_online_features(["user_profile:country", "user_profile:age"],
                                   entities={"user_id": [1500, 1501]}).to_dict()
    assert d == {"user_id": [1500, 1501], "country": ["pl", None], "age": [33, 44]}
    entities = REPO / "examples" / "data" / "entities.parquet"
    registry = REPO / "examples" / "registry.toml"
    got = quiver.get_historical_features(registry, pl.read_parquet(entities),
                                         ["user_stats:txn_count_7d"])
    want = quiver.get_historical_features(registry, pq.read_table(entities),
                                          ["user_stats:txn_count_7d"])
    assert got.to_pylist() == want.to_pylist()
    assert pl.from_arrow(got).height == want.num_rows
