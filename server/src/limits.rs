//! What a request may ask for: the bounds on a read's size and on a write batch, checked
//! before any work is done, and how much of the user's input an error message may quote.

use std::collections::HashSet;

use quiver_engine::{EngineError, ScalarType, ValueType};
use tonic::Status;

use crate::config::ServerConfig;

/// The API a response is encoded for. Feast sends a message per value (a `Value`, a
/// `Timestamp`, a status), the native API packed arrays, so a Feast value costs more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Api {
    Native,
    Feast,
}

/// Most bytes one response value of type `ty` encodes to, besides a string's, bytes' or
/// list's own contents (which are bounded while they are gathered).
fn fixed_bytes(ty: ValueType, api: Api) -> usize {
    let scalar = |s: ScalarType| match s {
        ScalarType::Bool => 1,
        ScalarType::Float32 => 4,
        ScalarType::Float64 => 8,
        // Varints: a negative int32 or any int64 takes up to 10 bytes.
        ScalarType::Int32 | ScalarType::Int64 | ScalarType::Timestamp => 10,
        // A length prefix (and, in Feast, a tag).
        ScalarType::String | ScalarType::Bytes => 6,
    };
    let value = match ty {
        ValueType::Scalar(s) => scalar(s),
        ValueType::Vector { dim } => 4 * dim as usize + 6,
        ValueType::List(_) => 6,
    };
    match api {
        // The value, a varint status and a varint event time.
        Api::Native => value + 1 + 10,
        // The value in a `Value` message inside a repeated field, a status, and a `Timestamp`
        // message of seconds and nanos.
        Api::Feast => value + 4 + 1 + 2 + 2 + 10 + 6,
    }
}

/// The size bounds of reads, from the server configuration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadLimits {
    max_features: usize,
    max_values: usize,
    max_response_bytes: usize,
}

impl ReadLimits {
    pub(crate) fn new(config: &ServerConfig) -> Self {
        Self {
            max_features: config.max_features_per_request,
            max_values: config.max_values_per_request,
            max_response_bytes: config.max_response_bytes,
        }
    }

    /// Refuses too many feature references, or one given twice, before any is resolved.
    pub(crate) fn check_refs<S: AsRef<str>>(&self, refs: &[S]) -> Result<(), Status> {
        if refs.len() > self.max_features {
            return Err(Status::invalid_argument(format!(
                "features: {} feature references exceed max_features_per_request = {}",
                refs.len(),
                self.max_features
            )));
        }
        let mut seen = HashSet::with_capacity(refs.len());
        for r in refs {
            let r = r.as_ref();
            if !r.contains(':') {
                return Err(Status::invalid_argument(format!(
                    "features: {} is not a feature reference; write \"view:feature\"",
                    quote(r)
                )));
            }
            if !seen.insert(r) {
                return Err(Status::invalid_argument(format!(
                    "features: {} is requested twice; ask for each feature once",
                    quote(r)
                )));
            }
        }
        Ok(())
    }

    /// Checks what a read of `rows` entities and features of `types` would answer, before
    /// reading: the value count and the fixed-width part of the response. Returns how many
    /// bytes of strings, bytes and list items the read may still gather.
    pub(crate) fn budget(
        &self,
        rows: usize,
        types: &[ValueType],
        api: Api,
    ) -> Result<usize, Status> {
        let values = rows.saturating_mul(types.len());
        if values > self.max_values {
            return Err(Status::invalid_argument(format!(
                "request: {rows} entity rows × {} features = {values} values exceed                  max_values_per_request = {}",
                types.len(),
                self.max_values
            )));
        }
        let per_row: usize = types.iter().map(|&t| fixed_bytes(t, api)).sum();
        let fixed = rows.saturating_mul(per_row);
        self.max_response_bytes
            .checked_sub(fixed)
            .ok_or_else(|| self.too_large(format!("{fixed} bytes of fixed-width values")))
    }

    /// The refusal of a read whose variable-length values outgrew its budget while being
    /// gathered; other engine errors pass through.
    pub(crate) fn gathered(&self, e: EngineError) -> Result<Status, EngineError> {
        match e {
            EngineError::CapacityExceeded(_) => {
                Ok(self.too_large("its strings, bytes and lists".to_owned()))
            }
            other => Err(other),
        }
    }

    fn too_large(&self, what: String) -> Status {
        Status::resource_exhausted(format!(
            "response: the answer would exceed max_response_bytes = {} ({what}); request              fewer entities or features per call",
            self.max_response_bytes
        ))
    }
}

/// The bounds on one write batch, from the server configuration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WriteLimits {
    pub(crate) max_rows: usize,
    pub(crate) max_value_bytes: usize,
    max_skew_micros: i64,
}

impl WriteLimits {
    pub(crate) fn new(config: &ServerConfig) -> Self {
        Self {
            max_rows: config.max_entities_per_request,
            max_value_bytes: config.max_value_bytes,
            max_skew_micros: i64::try_from(config.max_event_time_skew_secs)
                .unwrap_or(i64::MAX)
                .saturating_mul(1_000_000),
        }
    }

    /// Refuses a time (`what`, e.g. `event_timestamps[3]`) too far past `now`, naming the
    /// unit the client most likely used instead of microseconds.
    pub(crate) fn check_time(&self, what: &str, micros: i64, now: i64) -> Result<(), Status> {
        if micros <= now.saturating_add(self.max_skew_micros) {
            return Ok(());
        }
        let hint = if (micros / 1_000).abs_diff(now) < self.max_skew_micros.unsigned_abs() {
            "; it looks like nanoseconds: times are microseconds since the Unix epoch"
        } else {
            "; times are microseconds since the Unix epoch"
        };
        Err(Status::invalid_argument(format!(
            "{what}: {micros} is {} s ahead of the server clock, more than \
             max_event_time_skew_secs = {}{hint}",
            (micros - now) / 1_000_000,
            self.max_skew_micros / 1_000_000
        )))
    }
}

/// Most bytes of user input an error message quotes: a message must fit gRPC's metadata
/// limits whatever the client sent.
const QUOTE_LIMIT: usize = 128;

/// `s` in quotes, cut to a bounded prefix (on a character boundary) with its full length.
pub(crate) fn quote(s: &str) -> String {
    if s.len() <= QUOTE_LIMIT {
        return format!("{s:?}");
    }
    let mut end = QUOTE_LIMIT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}… ({} bytes)", &s[..end], s.len())
}
