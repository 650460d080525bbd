"""The in-process point-in-time join equals `quiver historical` on the same files, row by row."""

import subprocess

import pyarrow.parquet as pq
import pytest

import quiver
from conftest import REPO, _binary

REGISTRY = REPO / "examples" / "registry.toml"
ENTITIES = REPO / "examples" / "data" / "entities.parquet"
FEATURES = ["user_stats:txn_count_1h", "user_stats:txn_count_7d", "user_stats:failed_logins_24h",
            "user_embedding:embedding"]


def cli_training_set(tmp_path, *extra):
    out = tmp_path / "train.parquet"
    subprocess.run([_binary(), "historical", "--registry", str(REGISTRY), "--entities", str(ENTITIES),
                    "--features", ",".join(FEATURES), "--out", str(out), *extra],
                   check=True, capture_output=True)
    return pq.read_table(out)


def test_in_process_join_equals_the_command_line(tmp_path):
    expected = cli_training_set(tmp_path)
    entities = pq.read_table(ENTITIES)
    got = quiver.get_historical_features(REGISTRY, entities, FEATURES)
    assert got.schema == expected.schema
    assert got.to_pylist() == expected.to_pylist()
    # Values are there, not only nulls: the join found history for most rows.
    assert got.column("txn_count_7d").null_count < got.num_rows


def test_pandas_entity_frames_and_full_feature_names(tmp_path):
    expected = cli_training_set(tmp_path, "--full-feature-names")
    df = pq.read_table(ENTITIES).to_pandas()
    got = quiver.get_historical_features(REGISTRY, df, FEATURES, full_feature_names=True)
    assert "user_stats__txn_count_7d" in got.column_names
    assert got.to_pandas().equals(expected.to_pandas())


def test_bad_requests_name_what_is_wrong():
    entities = pq.read_table(ENTITIES)
    with pytest.raises(quiver.QuiverError) as e:
        quiver.get_historical_features(REGISTRY, entities, ["user_stats:nope"])
    assert "nope" in e.value.message
    with pytest.raises(quiver.QuiverError) as e:
        quiver.get_historical_features(REGISTRY, entities.drop_columns(["event_timestamp"]), FEATURES)
    assert "event_timestamp" in e.value.message
    with pytest.raises(quiver.QuiverError) as e:
        quiver.get_historical_features(REGISTRY, entities, FEATURES, feature_service="nope")
    assert e.value.code == "INVALID_ARGUMENT"
