"""Quiver from Python: an online feature store client with Arrow answers.

    import quiver
    client = quiver.Client("127.0.0.1:6566")
    r = client.get_online_features(
        features=["user_stats:txn_count_7d", "user_stats:country"],
        entity_rows=[{"user_id": 1}, {"user_id": 2}],
    )
    r.to_dict()     # {"user_id": [1, 2], "txn_count_7d": [...], "country": [...]}
    r.to_arrow()    # a pyarrow.Table; r.to_pandas() a pandas.DataFrame

The RPC and the conversion to Arrow run in Rust with the GIL released (the same client the
`quiver` command line uses). Errors raise `QuiverError`, whose `code` is the gRPC status name
and whose `message` is the server's explanation naming the field.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any, Mapping, Optional, Sequence

import pyarrow as _pa

from ._quiver import Client as _NativeClient
from ._quiver import OnlineResponse as _NativeResponse
from ._quiver import QuiverError

__all__ = ["Client", "OnlineResponse", "QuiverError"]


def _columns_from_rows(entity_rows: Sequence[Mapping[str, Any]]) -> dict:
    """`[{"user_id": 1}, {"user_id": 2}]` → `{"user_id": [1, 2]}`, every row the same keys."""
    if not entity_rows:
        raise QuiverError("INVALID_ARGUMENT: entity_rows: no rows")
    names = list(entity_rows[0].keys())
    for i, row in enumerate(entity_rows):
        if set(row.keys()) != set(names):
            raise QuiverError(
                f"INVALID_ARGUMENT: entity_rows[{i}]: has keys {sorted(row.keys())}, "
                f"row 0 has {sorted(names)}"
            )
    return {n: [row[n] for row in entity_rows] for n in names}


def _seconds(max_age: Any) -> Optional[float]:
    if max_age is None:
        return None
    if isinstance(max_age, _dt.timedelta):
        return max_age.total_seconds()
    return float(max_age)


class OnlineResponse:
    """One answer: the requested keys, then each feature's values, statuses and event times."""

    def __init__(self, native: _NativeResponse):
        self._native = native

    @property
    def feature_names(self) -> list:
        return self._native.feature_names

    def __len__(self) -> int:
        return self._native.row_count

    def to_arrow(self, include_status: bool = False, include_event_timestamps: bool = False) -> _pa.Table:
        """A pyarrow Table: join keys, then a column per feature (null unless PRESENT), with
        `<feature>__status` and `<feature>__event_timestamp` columns when asked for."""
        batch = self._native.to_arrow(include_status, include_event_timestamps)
        return _pa.Table.from_batches([batch])

    def to_dict(self, include_event_timestamps: bool = False) -> dict:
        """Feast's shape: `{name: [value per entity row]}`, None where a value is not PRESENT."""
        return self.to_arrow(include_event_timestamps=include_event_timestamps).to_pydict()

    def to_pandas(self, include_status: bool = False, include_event_timestamps: bool = False):
        return self.to_arrow(include_status, include_event_timestamps).to_pandas()

    @property
    def statuses(self) -> dict:
        """`{feature: [status name per row]}`: PRESENT, NOT_FOUND, NULL_VALUE, OUTSIDE_MAX_AGE."""
        t = self._native.to_arrow(True, False)
        return {n: t.column(f"{n}__status").to_pylist() for n in self.feature_names}

    @property
    def event_timestamps(self) -> dict:
        """`{feature: [event time per row]}` (UTC datetimes; None when NOT_FOUND)."""
        t = self._native.to_arrow(False, True)
        return {n: t.column(f"{n}__event_timestamp").to_pylist() for n in self.feature_names}


class Client:
    """A connection to one Quiver server.

    `address` is `host:port` (or an `http://` / `https://` URL), `token` the bearer token
    the server requires, `timeout` a deadline in seconds for every call.
    """

    def __init__(self, address: str = "127.0.0.1:6566", token: Optional[str] = None,
                 timeout: Optional[float] = None):
        self._native = _NativeClient(address, token, timeout)

    def get_online_features(
        self,
        features: Optional[Sequence[str]] = None,
        entity_rows: Optional[Sequence[Mapping[str, Any]]] = None,
        *,
        entities: Optional[Mapping[str, Sequence[Any]]] = None,
        feature_service: Optional[str] = None,
        full_feature_names: bool = False,
        max_age: Any = None,
    ) -> OnlineResponse:
        """Reads `features` ("view:feature") or a `feature_service` for the entities given as
        `entity_rows` (a dict per row) or `entities` (a list per join key)."""
        if (entity_rows is None) == (entities is None):
            raise QuiverError("INVALID_ARGUMENT: give either entity_rows or entities")
        columns = _columns_from_rows(entity_rows) if entity_rows is not None else {
            k: list(v) for k, v in entities.items()
        }
        native = self._native.get_online_features(
            columns,
            list(features) if features is not None else None,
            feature_service,
            full_feature_names,
            _seconds(max_age),
        )
        return OnlineResponse(native)
