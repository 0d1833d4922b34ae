//! The front door's checks at the gRPC edge: the caller's key (a tonic interceptor in front
//! of each service), its account's limits (asked by `InvokeFunction` before it starts), and
//! the statuses a refused call gets.
//!
//! A call presents its key as the gRPC metadata `authorization: Bearer KEY`
//! ([`AUTHORIZATION`]). Each service is wrapped in an [`Authenticate`] interceptor that
//! knows the scope the service needs — `invoke` for `apiserverproto.APIServer`, `admin` for
//! `faas.admin.v1.Admin`; `grpc.health.v1` is never wrapped, so probes need no key — and
//! asks the service layer's [`Access`] whether the call may run:
//!
//! | refusal | status |
//! |---|---|
//! | no key (and keyless calls may not make the call), not `Bearer KEY`, an unknown key | `UNAUTHENTICATED` |
//! | a key whose scope does not cover the service | `PERMISSION_DENIED`, naming the scope needed |
//! | an account over its concurrency or rate limit | `RESOURCE_EXHAUSTED`, naming the limit |
//!
//! The key leaves the request's metadata once checked (nothing downstream can log or
//! forward it), and the accepted [`Caller`] (the key's name) goes into the request's
//! extensions. Keys are never logged; refusals are logged at debug level with the key's
//! name at most.

use std::sync::Arc;

use tonic::service::Interceptor;
use tonic::{Request, Status};

use crate::model::keys::Scope;
use crate::service::access::{Access, AccessError};

pub use crate::error::{access_status, limit_status};
pub use crate::service::access::Caller;

/// The gRPC metadata key a call's key travels in, as `Bearer KEY` (written once in
/// `faas_proto::meta`, where clients find it too).
pub use faas_proto::meta::AUTHORIZATION;

/// The interceptor in front of one service: checks the key of every call against the scope
/// the service needs. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Authenticate {
    access: Arc<Access>,
    needed: Scope,
}

impl Authenticate {
    /// Calls of the service need `needed`.
    pub fn new(access: Arc<Access>, needed: Scope) -> Authenticate {
        Authenticate { access, needed }
    }
}

impl Interceptor for Authenticate {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if !self.access.checks() {
            return Ok(request);
        }
        let value = match request.metadata_mut().remove(AUTHORIZATION) {
            None => None,
            Some(v) => Some(
                v.to_str()
                    .map_err(|_| access_status(&AccessError::Malformed))?
                    .to_string(),
            ),
        };
        match self.access.check(value.as_deref(), self.needed) {
            Ok(caller) => {
                request.extensions_mut().insert(caller);
                Ok(request)
            }
            Err(err) => {
                tracing::debug!(needed = %self.needed, error = %err, "call refused");
                Err(access_status(&err))
            }
        }
    }
}
