"""The Python client against a real server: values of every type it can be sent here, statuses,
keys given as rows or columns, composite keys, feature services, and errors that name the field."""

import datetime as dt
import math

import pyarrow as pa
import pytest

import quiver
from conftest import NOW

STATS = ["user_stats:clicks", "user_stats:logins", "user_stats:ctr", "user_stats:amount",
         "user_stats:verified", "user_stats:last_login", "user_stats:country"]


def test_every_scalar_type_reads_back_as_written(client):
    r = client.get_online_features(STATS, [{"user_id": 2}, {"user_id": 3}])
    d = r.to_dict()
    assert d["user_id"] == [2, 3]
    assert d["clicks"] == [20, 30]
    assert d["logins"] == [2, 3]
    assert d["ctr"] == [0.5, 0.75]
    assert d["amount"] == [3.0, 4.5]
    assert d["verified"] == [True, False]
    assert d["last_login"] == [dt.datetime.fromtimestamp(NOW - 200, dt.timezone.utc),
                               dt.datetime.fromtimestamp(NOW - 300, dt.timezone.utc)]
    assert d["country"] == ["c2", "c3"]
    t = r.to_arrow()
    assert t.schema.field("clicks").type == pa.int64()
    assert t.schema.field("logins").type == pa.int32()
    assert t.schema.field("ctr").type == pa.float32()
    assert t.schema.field("amount").type == pa.float64()
    assert t.schema.field("verified").type == pa.bool_()
    assert t.schema.field("last_login").type == pa.timestamp("us", tz="UTC")
    assert t.schema.field("country").type == pa.string()
    assert r.feature_names == [s.split(":")[1] for s in STATS]
    assert len(r) == 2


def test_statuses_and_event_times(client):
    r = client.get_online_features(
        ["user_stats:clicks", "user_profile:country", "user_profile:age"],
        entities={"user_id": [3, 99]},
    )
    assert r.statuses == {
        "clicks": ["PRESENT", "NOT_FOUND"],
        "country": ["PRESENT", "NOT_FOUND"],
        "age": ["NULL_VALUE", "NOT_FOUND"],
    }
    d = r.to_dict()
    assert d["clicks"] == [30, None]
    assert d["age"] == [None, None]
    ts = r.event_timestamps
    assert ts["clicks"] == [dt.datetime.fromtimestamp(NOW - 10, dt.timezone.utc), None]
    assert ts["country"][0] == dt.datetime.fromtimestamp(NOW - 5, dt.timezone.utc)
    full = r.to_arrow(include_status=True, include_event_timestamps=True)
    assert "clicks__status" in full.column_names and "age__event_timestamp" in full.column_names


def test_a_tight_max_age_withholds_values(client):
    r = client.get_online_features(["user_stats:clicks"], [{"user_id": 1}], max_age=dt.timedelta(seconds=1))
    assert r.statuses == {"clicks": ["OUTSIDE_MAX_AGE"]}
    assert r.to_dict()["clicks"] == [None]
    fresh = client.get_online_features(["user_stats:clicks"], [{"user_id": 1}], max_age=3600)
    assert fresh.to_dict()["clicks"] == [10]


def test_rows_and_columns_give_the_same_answer(client):
    rows = client.get_online_features(STATS, [{"user_id": u} for u in (5, 1, 5)]).to_arrow()
    cols = client.get_online_features(STATS, entities={"user_id": [5, 1, 5]}).to_arrow()
    assert rows.equals(cols)


def test_composite_keys_and_full_feature_names(client):
    r = client.get_online_features(
        ["user_merchant_stats:txn_count"],
        [{"user_id": 1, "merchant_id": "m2"}, {"user_id": 1, "merchant_id": "m1"},
         {"user_id": 2, "merchant_id": "m1"}],
        full_feature_names=True,
    )
    d = r.to_dict()
    assert d["merchant_id"] == ["m2", "m1", "m1"]
    assert d["user_merchant_stats__txn_count"] == [8, 7, None]


def test_feature_service(client):
    r = client.get_online_features(feature_service="fraud_v1", entity_rows=[{"user_id": 4}])
    assert r.feature_names == ["amount", "clicks", "embedding", "age"]
    d = r.to_dict()
    assert d["amount"] == [6.0] and d["clicks"] == [40]
    assert r.statuses["embedding"] == ["NOT_FOUND"]


def test_pandas(client):
    df = client.get_online_features(STATS, entities={"user_id": [1, 2]}).to_pandas()
    assert list(df["clicks"]) == [10, 20]
    assert math.isclose(df["ctr"][1], 0.5)


def test_unknown_feature_names_it(client):
    with pytest.raises(quiver.QuiverError) as e:
        client.get_online_features(["user_stats:nope"], [{"user_id": 1}])
    assert e.value.code in ("NOT_FOUND", "INVALID_ARGUMENT")
    assert "nope" in e.value.message


def test_wrong_key_type_names_the_join_key(client):
    with pytest.raises(quiver.QuiverError) as e:
        client.get_online_features(["user_stats:clicks"], entities={"user_id": ["a"]})
    assert e.value.code == "INVALID_ARGUMENT"
    assert "user_id" in e.value.message


def test_missing_join_key_and_bad_arguments(client):
    with pytest.raises(quiver.QuiverError) as e:
        client.get_online_features(["user_merchant_stats:txn_count"], [{"user_id": 1}])
    assert e.value.code == "INVALID_ARGUMENT" and "merchant_id" in e.value.message
    with pytest.raises(quiver.QuiverError) as e:
        client.get_online_features(["user_stats:clicks"], [{"user_id": 1}, {"uid": 2}])
    assert "entity_rows[1]" in str(e.value)
    with pytest.raises(quiver.QuiverError):
        client.get_online_features(["user_stats:clicks"])
    with pytest.raises(quiver.QuiverError) as e:
        client.get_online_features(["user_stats:clicks"], entities={"user_id": [1.5]})
    assert "user_id" in e.value.message


def test_an_unreachable_server_is_unavailable():
    from conftest import free_port
    with pytest.raises(quiver.QuiverError) as e:
        quiver.Client(f"127.0.0.1:{free_port()}", timeout=2)
    assert e.value.code == "UNAVAILABLE"


def test_tls_and_a_bearer_token(tmp_path):
    """A server speaking only TLS and requiring a token: the client trusts the test CA
    (tests/fixtures/tls) and sends the token; without either it is refused, and says why."""
    from conftest import REPO, Server

    tls = REPO / "tests" / "fixtures" / "tls"
    token = "s3cret-token-123456"
    ca = str(tls / "ca.pem")
    server = Server(tmp_path, extra=("--tls-cert", str(tls / "server.pem"), "--tls-key",
                                     str(tls / "server.key"), "--auth-token", token),
                    client=lambda a: quiver.Client(f"https://{a}", token=token, ca_cert=ca, timeout=5))
    try:
        c = quiver.Client(f"https://{server.address}", token=token, ca_cert=ca, timeout=5)
        assert c.get_online_features(["user_stats:clicks"], entities={"user_id": [1]}).statuses == {
            "clicks": ["NOT_FOUND"]}
        with pytest.raises(quiver.QuiverError) as e:
            quiver.Client(f"https://{server.address}", ca_cert=ca, timeout=5).stats()
        assert e.value.code == "UNAUTHENTICATED"
        with pytest.raises(quiver.QuiverError) as e:
            quiver.Client(f"https://{server.address}", token=token, timeout=5)
        assert e.value.code == "UNAVAILABLE"  # the test CA is not trusted by default
        with pytest.raises(quiver.QuiverError) as e:
            quiver.Client(server.address, token=token, ca_cert=str(tmp_path / "none.pem"))
        assert "none.pem" in e.value.message
    finally:
        server.stop()
