//! Authentication: an optional bearer token, checked on every data RPC and compared in
//! constant time.

use std::sync::Arc;

use tonic::service::Interceptor;
use tonic::{Request, Status};

/// Checks `authorization: Bearer <token>` on every call when a token is configured.
#[derive(Debug, Clone)]
pub(crate) struct BearerAuth {
    token: Option<Arc<[u8]>>,
}

impl BearerAuth {
    pub(crate) fn new(token: Option<&str>) -> Self {
        Self {
            token: token.map(|t| Arc::from(t.as_bytes())),
        }
    }
}

/// Equality whose running time does not depend on where the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Interceptor for BearerAuth {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        let Some(token) = &self.token else {
            return Ok(req);
        };
        let given = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::as_bytes);
        match given {
            Some(g) if constant_time_eq(g, token) => Ok(req),
            Some(_) => Err(Status::unauthenticated("authorization: wrong bearer token")),
            None => Err(Status::unauthenticated(
                "authorization: this server requires \"authorization: Bearer <token>\"",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_exactly() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        let mut auth = BearerAuth::new(Some("s3cret-token-123456"));
        let mut req = Request::new(());
        assert!(auth.call(Request::new(())).is_err());
        req.metadata_mut().insert(
            "authorization",
            "Bearer s3cret-token-123456".parse().unwrap(),
        );
        assert!(auth.call(req).is_ok());
        let mut open = BearerAuth::new(None);
        assert!(open.call(Request::new(())).is_ok());
    }
}
