"""Quiver as a Feast online store: switch a Feast repository by configuration.

    online_store:
      type: quiver.feast.QuiverOnlineStore
      address: 127.0.0.1:6566

`feast apply` turns the repository's feature views into a Quiver registry (names, join keys,
value types, TTLs) and applies it; `feast materialize` writes through `online_write_batch`;
`FeatureStore.get_online_features` and `feast serve` read with one Quiver call per entity
(all views keyed by the same join keys share it). docs/feast.md has the whole story.

Reads follow Feast's own online semantics by default: the latest materialized value is
served whatever its age, as Feast's SQLite and Redis stores do. With `enforce_ttl: true`
the views' TTLs are applied by the server, and expired values come back NOT_FOUND.
"""

from __future__ import annotations

import datetime as _dt
import os
from typing import Any, Callable, Dict, List, Literal, Optional, Sequence, Tuple

import pyarrow as pa
from feast import Entity, utils
from feast.feature_view import FeatureView
from feast.infra.online_stores.online_store import OnlineStore
from feast.protos.feast.serving.ServingService_pb2 import (
    FeatureList,
    FieldStatus,
    GetOnlineFeaturesRequest,
    GetOnlineFeaturesResponse,
)
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.repo_config import FeastConfigBaseModel, RepoConfig
from feast.type_map import feast_value_type_to_python_type
from feast.value_type import ValueType
from pydantic import StrictStr

import quiver

__all__ = ["QuiverOnlineStore", "QuiverOnlineStoreConfig", "registry_toml"]


class QuiverOnlineStoreConfig(FeastConfigBaseModel):
    """The `online_store` block of feature_store.yaml."""

    type: Literal["quiver.feast.QuiverOnlineStore"] = "quiver.feast.QuiverOnlineStore"
    address: StrictStr = "127.0.0.1:6566"
    """`host:port`, or an `http://` / `https://` URL."""
    token: Optional[StrictStr] = None
    """Bearer token, when the server requires one (else $QUIVER_AUTH_TOKEN)."""
    timeout: Optional[float] = 30.0
    """Deadline of every call, seconds."""
    enforce_ttl: bool = False
    """Apply the feature views' TTLs when serving (Feast's own stores do not)."""


# Feast value types → Quiver registry types (docs/registry.md). Anything else has no Quiver
# type and is refused at `feast apply`, naming the feature.
_SCALAR = {
    ValueType.INT32: "int32",
    ValueType.INT64: "int64",
    ValueType.FLOAT: "float32",
    ValueType.DOUBLE: "float64",
    ValueType.BOOL: "bool",
    ValueType.STRING: "string",
    ValueType.BYTES: "bytes",
    ValueType.UNIX_TIMESTAMP: "timestamp",
}
_LIST = {
    ValueType.INT32_LIST: "list<int32>",
    ValueType.INT64_LIST: "list<int64>",
    ValueType.FLOAT_LIST: "list<float32>",
    ValueType.DOUBLE_LIST: "list<float64>",
    ValueType.BOOL_LIST: "list<bool>",
    ValueType.STRING_LIST: "list<string>",
    ValueType.BYTES_LIST: "list<bytes>",
    ValueType.UNIX_TIMESTAMP_LIST: "list<timestamp>",
}
_ARROW = {
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float32": pa.float32(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "string": pa.string(),
    "bytes": pa.binary(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}
_KEY = {ValueType.INT64: "int64", ValueType.INT32: "int64", ValueType.STRING: "string"}


def _quiver_type(view: str, feature: str, dtype: Any) -> str:
    vt = dtype.to_value_type()
    t = _SCALAR.get(vt) or _LIST.get(vt)
    if t is None:
        raise ValueError(
            f"feature {view}:{feature}: Feast type {dtype} ({vt.name}) has no Quiver type; "
            f"Quiver stores {', '.join(sorted(_SCALAR.values()))} and lists of them"
        )
    return t


def _arrow_type(t: str) -> pa.DataType:
    if t.startswith("list<"):
        return pa.list_(_ARROW[t[5:-1]])
    return _ARROW[t]


def _entity_of(view: FeatureView) -> Tuple[str, List[Tuple[str, str]]]:
    """The Quiver entity of a Feast view: named after the view's entities, keyed by their join
    keys in the view's order."""
    keys = []
    for col in view.entity_columns:
        vt = col.dtype.to_value_type()
        if vt not in _KEY:
            raise ValueError(
                f"feature view {view.name}: join key {col.name} is {col.dtype}; Quiver keys are "
                f"int64 or string"
            )
        keys.append((col.name, _KEY[vt]))
    if not keys:
        raise ValueError(f"feature view {view.name}: views without entities are not supported")
    return "__".join(view.entities) or view.name, keys


def _seconds(ttl: Optional[_dt.timedelta]) -> int:
    return int(ttl.total_seconds()) if ttl else 0


def _view_table(view: FeatureView, entity: str, enforce_ttl: bool) -> dict:
    feast_ttl = _seconds(view.ttl)
    t: Dict[str, Any] = {
        "name": view.name,
        "entity": entity,
        "ttl": f"{feast_ttl if enforce_ttl else 0}s",
        "tags": {**view.tags, "feast_ttl": f"{feast_ttl}s"},
        "feature": [
            {"name": f.name, "type": _quiver_type(view.name, f.name, f.dtype)}
            for f in view.features
        ],
    }
    if view.description:
        t["description"] = view.description
    if view.owner:
        t["owner"] = view.owner
    return t


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _toml_key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else _toml_value(k)


def registry_toml(registry: dict) -> str:
    """A registry (as `tomllib` reads one) back as TOML: the top-level scalars, then each
    array of tables (`[[entity]]`, `[[feature_view]]`, `[[feature_service]]`) with its
    values inline."""
    lines = [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in registry.items()
             if not isinstance(v, list)]
    for k, items in registry.items():
        if isinstance(items, list):
            for item in items:
                lines += ["", f"[[{k}]]"]
                lines += [f"{_toml_key(f)} = {_toml_value(v)}" for f, v in item.items()]
    return "\n".join(lines) + "\n"


class QuiverOnlineStore(OnlineStore):
    """Feast's OnlineStore interface on a Quiver server."""

    _clients: Dict[int, quiver.Client] = {}

    def _client(self, config: RepoConfig) -> quiver.Client:
        # `feast serve` forks its workers: each process gets its own connection.
        pid = os.getpid()
        c = self._clients.get(pid)
        if c is None:
            s: QuiverOnlineStoreConfig = config.online_store
            c = quiver.Client(s.address, token=s.token or os.environ.get("QUIVER_AUTH_TOKEN"),
                              timeout=s.timeout)
            self._clients = {pid: c}
        return c

    # ---- schema ------------------------------------------------------------------------

    def update(
        self,
        config: RepoConfig,
        tables_to_delete: Sequence[FeatureView],
        tables_to_keep: Sequence[FeatureView],
        entities_to_delete: Sequence[Entity],
        entities_to_keep: Sequence[Entity],
        partial: bool,
    ) -> None:
        """Merges the kept views into the server's registry and drops the deleted ones."""
        client = self._client(config)
        current = client.registry()
        enforce = config.online_store.enforce_ttl
        entities = {e["name"]: e for e in current.get("entity", [])}
        views = {v["name"]: v for v in current.get("feature_view", [])}
        services = current.get("feature_service", [])
        for t in tables_to_delete:
            views.pop(t.name, None)
        for t in tables_to_keep:
            name, keys = _entity_of(t)
            join_keys = [{"name": k, "type": ty} for k, ty in keys]
            old = entities.get(name)
            if old is not None and old.get("join_keys") != join_keys:
                used = [v["name"] for v in views.values() if v["entity"] == name and v["name"] != t.name]
                if used:
                    raise ValueError(
                        f"feature view {t.name}: entity {name} has join keys {old['join_keys']} "
                        f"in Quiver (used by {', '.join(used)}), the view needs {join_keys}"
                    )
            entities[name] = {**(old or {}), "name": name, "join_keys": join_keys}
            views[t.name] = _view_table(t, name, enforce)
        used_entities = {v["entity"] for v in views.values()}
        kept_services = [s for s in services
                         if all(r.split(":")[0] in views for r in s.get("features", []))]
        registry = {
            "project": config.project,
            "entity": [e for n, e in entities.items() if n in used_entities],
            "feature_view": list(views.values()),
        }
        if kept_services:
            registry["feature_service"] = kept_services
        removals = bool(tables_to_delete) or len(kept_services) < len(services)
        client.apply(registry_toml(registry), allow_removals=removals)

    def teardown(self, config: RepoConfig, tables: Sequence[FeatureView],
                 entities: Sequence[Entity]) -> None:
        """Drops the views (and their data) from the server's registry."""
        self.update(config, tables, [], entities, [], partial=True)

    # ---- writes ------------------------------------------------------------------------

    def online_write_batch(
        self,
        config: RepoConfig,
        table: FeatureView,
        data: List[Tuple[EntityKeyProto, Dict[str, ValueProto], _dt.datetime, Optional[_dt.datetime]]],
        progress: Optional[Callable[[int], Any]],
    ) -> None:
        if not data:
            return
        _, keys = _entity_of(table)
        columns: Dict[str, list] = {k: [] for k, _ in keys}
        ts: list = []
        types = {f.name: _quiver_type(table.name, f.name, f.dtype) for f in table.features}
        values: Dict[str, list] = {f: [] for f in types}
        for entity_key, row, event_ts, _created in data:
            key = dict(zip(entity_key.join_keys, entity_key.entity_values))
            for k, _ in keys:
                columns[k].append(feast_value_type_to_python_type(key[k]))
            ts.append(event_ts if event_ts.tzinfo else event_ts.replace(tzinfo=_dt.timezone.utc))
            for f in types:
                v = row.get(f)
                values[f].append(None if v is None else feast_value_type_to_python_type(v))
        arrays = {k: pa.array(columns[k], pa.int64() if ty == "int64" else pa.string())
                  for k, ty in keys}
        arrays["event_timestamp"] = pa.array(ts, pa.timestamp("us", tz="UTC"))
        for f, ty in types.items():
            arrays[f] = pa.array(values[f], _arrow_type(ty))
        self._client(config).write(table.name, pa.table(arrays))
        if progress:
            progress(len(data))

    # ---- reads -------------------------------------------------------------------------
    #
    # Reads go to the server's Feast serving API (docs/api.md): the request is built and the
    # answer parsed with Feast's own protobuf classes, so values arrive as Feast `Value`s with
    # no conversion in Python, and one call answers every view of the same entity.

    def _call(self, config: RepoConfig, refs: List[str],
              keys: Dict[str, Sequence[ValueProto]]) -> List[GetOnlineFeaturesResponse.FeatureVector]:
        """One Feast GetOnlineFeatures for `refs` on the rows of `keys`: a FeatureVector per
        ref, in order, with Feast's own statuses (see `_feast_statuses`)."""
        req = GetOnlineFeaturesRequest(features=FeatureList(val=refs))
        for k, values in keys.items():
            req.entities[k].val.extend(values)
        raw = self._client(config)._native.feast_get_online_features(req.SerializeToString())
        answer = GetOnlineFeaturesResponse.FromString(raw)
        # The server sends the join key columns first.
        results = list(answer.results)[len(keys):]
        for fv in results:
            _feast_statuses(fv)
        return results

    def online_read(
        self,
        config: RepoConfig,
        table: FeatureView,
        entity_keys: List[EntityKeyProto],
        requested_features: Optional[List[str]] = None,
    ) -> List[Tuple[Optional[_dt.datetime], Optional[Dict[str, ValueProto]]]]:
        features = requested_features or [f.name for f in table.features]
        if not entity_keys:
            return []
        _, join_keys = _entity_of(table)
        keys: Dict[str, List[ValueProto]] = {k: [] for k, _ in join_keys}
        for ek in entity_keys:
            key = dict(zip(ek.join_keys, ek.entity_values))
            for k, _ in join_keys:
                keys[k].append(key[k])
        results = self._call(config, [f"{table.name}:{f}" for f in features], keys)
        rows: List[Tuple[Optional[_dt.datetime], Optional[Dict[str, ValueProto]]]] = []
        for i in range(len(entity_keys)):
            found = {f: fv.values[i] for f, fv in zip(features, results)
                     if fv.statuses[i] == FieldStatus.PRESENT}
            ts = max((fv.event_timestamps[i].ToDatetime(tzinfo=_dt.timezone.utc)
                      for fv in results if fv.statuses[i] == FieldStatus.PRESENT), default=None)
            rows.append((ts, found) if found else (None, None))
        return rows

    def _read_features_per_fv(
        self,
        config: RepoConfig,
        grouped_refs: List,
        join_key_values: Dict,
        entity_name_to_join_key_map: Dict,
        online_features_response,
        full_feature_names: bool,
        include_feature_view_version_metadata: bool,
    ) -> None:
        """Feast's per-view read loop, as one Quiver call per entity for all the views of the
        request keyed by it (Feast's own loop calls `online_read` once per view)."""
        groups: Dict[str, List[int]] = {}
        for i, (table, _) in enumerate(grouped_refs):
            groups.setdefault(_entity_of(table)[0], []).append(i)
        answers: Dict[int, list] = {}
        for members in groups.values():
            table = grouped_refs[members[0]][0]
            keys = utils._get_table_entity_values(table, entity_name_to_join_key_map,
                                                  join_key_values)
            refs = [f"{grouped_refs[i][0].name}:{f}" for i in members for f in grouped_refs[i][1]]
            results = iter(self._call(config, refs, keys))
            for i in members:
                answers[i] = [next(results) for _ in grouped_refs[i][1]]
        for i, (table, features) in enumerate(grouped_refs):
            name = table.projection.name_to_use()
            online_features_response.metadata.feature_names.val.extend(
                f"{name}__{f}" if full_feature_names else f for f in features)
            if include_feature_view_version_metadata:
                clean = table.projection.name_alias or table.projection.name
                meta = online_features_response.metadata.feature_view_metadata
                if clean not in [m.name for m in meta]:
                    m = meta.add()
                    m.name = clean
                    m.version = getattr(table, "current_version_number", 0) or 0
            online_features_response.results.extend(answers[i])


def _feast_statuses(fv: GetOnlineFeaturesResponse.FeatureVector) -> None:
    """Statuses as Feast's own stores give them: a value written as null is PRESENT with an
    empty value (Feast stores an empty Value for it), and a value withheld for its age
    (`enforce_ttl`) is NOT_FOUND with no event time, as if never materialized."""
    statuses = fv.statuses
    if FieldStatus.NULL_VALUE in statuses or FieldStatus.OUTSIDE_MAX_AGE in statuses:
        for i, st in enumerate(statuses):
            if st == FieldStatus.NULL_VALUE:
                statuses[i] = FieldStatus.PRESENT
            elif st == FieldStatus.OUTSIDE_MAX_AGE:
                statuses[i] = FieldStatus.NOT_FOUND
                fv.event_timestamps[i].Clear()
