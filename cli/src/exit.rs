//! The `faas` command's exit codes: what a script can tell apart without reading the message.
//!
//! | code | meaning | from |
//! |---|---|---|
//! | 0 | success | |
//! | 1 | anything else | `FAILED_PRECONDITION`, `INTERNAL`, a file that cannot be written, ... |
//! | 2 | usage | clap: a bad flag or argument, before anything runs |
//! | 3 | not found | `NOT_FOUND`: no such function, version, alias or invocation |
//! | 4 | bad input | `INVALID_ARGUMENT`, `OUT_OF_RANGE`, `ALREADY_EXISTS`; what the command |
//! | | | refuses itself (a flag value, a deploy file, an address) |
//! | 5 | unavailable or no capacity | `UNAVAILABLE`, `RESOURCE_EXHAUSTED` (a limit, no node); |
//! | | | the API server cannot be reached |
//! | 6 | the function failed | `UNKNOWN` (its own error); `RESOURCE_EXHAUSTED` past its memory |
//! | 7 | timeout | `DEADLINE_EXCEEDED`, the client's deadline; `faas result --wait` out of time |
//! | 8 | auth | `UNAUTHENTICATED`, `PERMISSION_DENIED` |
//!
//! One place decides ([`code_of`]): it walks an error's causes for what the command kept of
//! the failure — a gRPC status ([`CallFailed`], or a bare `tonic::Status`), an API server
//! that cannot be reached ([`Unreachable`], a transport error, a refused connection), or an
//! explicit code ([`Coded`], e.g. [`bad_input`]). The API server answers a function's own
//! failure `UNKNOWN` and a function out of memory `RESOURCE_EXHAUSTED` (see
//! `faas_apiserver::api::convert::invoke_status`); the latter shares its code with the
//! limits and the scheduler's "no capacity", so its message ("ran out of memory", the
//! platform's wording of `InvokeError::OutOfMemory`) tells them apart.

use std::io::ErrorKind;

use tonic::Code;

/// Success.
pub const OK: u8 = 0;
/// Anything not listed below.
pub const OTHER: u8 = 1;
/// A bad flag or argument (clap exits with it before anything runs).
pub const USAGE: u8 = 2;
/// No such function, version, alias or invocation.
pub const NOT_FOUND: u8 = 3;
/// The server or the command refused the input.
pub const BAD_INPUT: u8 = 4;
/// The platform cannot serve now (unavailable, no capacity, a limit, unreachable).
pub const UNAVAILABLE: u8 = 5;
/// The function ran and failed.
pub const FUNCTION_ERROR: u8 = 6;
/// A deadline passed.
pub const TIMEOUT: u8 = 7;
/// No key, a wrong key, or a key whose scope does not cover the call.
pub const AUTH: u8 = 8;

/// The table `faas --help` ends with.
pub const HELP: &str = "\
Exit codes:
  0  success
  1  any other failure
  2  usage: a bad flag or argument
  3  not found (function, version, alias, invocation)
  4  bad input (the server or the command refused it)
  5  unavailable or no capacity (including: cannot reach the API server)
  6  the function failed (its own error, or it ran out of its memory)
  7  timeout
  8  auth: no key, a wrong key, or a key without the scope";

/// The message part the API server gives a function that ran out of its memory.
const OUT_OF_MEMORY: &str = "ran out of memory";

/// The exit code of a failed call with `code` and `message`.
pub fn for_status(code: Code, message: &str) -> u8 {
    match code {
        Code::Ok => OK,
        Code::NotFound => NOT_FOUND,
        Code::InvalidArgument | Code::OutOfRange | Code::AlreadyExists => BAD_INPUT,
        Code::ResourceExhausted if message.contains(OUT_OF_MEMORY) => FUNCTION_ERROR,
        Code::Unavailable | Code::ResourceExhausted => UNAVAILABLE,
        Code::Unknown => FUNCTION_ERROR,
        Code::DeadlineExceeded => TIMEOUT,
        // tonic's own deadline on this side.
        Code::Cancelled if message == "Timeout expired" => TIMEOUT,
        Code::Unauthenticated | Code::PermissionDenied => AUTH,
        _ => OTHER,
    }
}

/// A gRPC code by its canonical name (`NOT_FOUND`), as `GetInvocation` reports a failure.
pub fn code_named(name: &str) -> Option<Code> {
    let wanted: String = name.chars().filter(|c| *c != '_').collect();
    // Codes are 0 to 16; `Code`'s Debug is its CamelCase name: `NotFound` ~ `NOT_FOUND`.
    (0..=16)
        .map(Code::from_i32)
        .find(|code| !wanted.is_empty() && format!("{code:?}").eq_ignore_ascii_case(&wanted))
}

/// A call the API server answered with an error: prints `what: Code: message` (or `Code:
/// message` without `what`), and keeps the status for [`code_of`].
#[derive(Debug)]
pub struct CallFailed {
    pub what: String,
    pub status: tonic::Status,
}

impl std::fmt::Display for CallFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.what.is_empty() {
            write!(f, "{}: ", self.what)?;
        }
        write!(f, "{:?}: {}", self.status.code(), self.status.message())
    }
}

impl std::error::Error for CallFailed {}

/// `map_err(call_failed("deploy hello"))`: a failed call as a [`CallFailed`].
pub fn call_failed(what: impl std::fmt::Display) -> impl FnOnce(tonic::Status) -> anyhow::Error {
    move |status| {
        anyhow::Error::new(CallFailed {
            what: what.to_string(),
            status,
        })
    }
}

/// The API server cannot be reached: one line naming it, why, and what to check.
#[derive(Debug)]
pub struct Unreachable {
    pub addr: String,
    pub why: String,
}

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cannot reach the API server at {}: {} (is `faas up` running? --apiserver or \
             FAAS_APISERVER names another)",
            self.addr, self.why
        )
    }
}

impl std::error::Error for Unreachable {}

impl Unreachable {
    /// Why connecting to `addr` failed, in a few words: the innermost I/O error's kind
    /// ("connection refused"), else the innermost cause's text — never a debug dump.
    pub fn new(addr: &str, err: &(dyn std::error::Error + 'static)) -> Unreachable {
        let mut why = err.to_string();
        let mut cause = Some(err);
        while let Some(e) = cause {
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                // An OS error by its kind ("connection refused", not "Connection refused
                // (os error 111)"); any other (a name that does not resolve) by its text.
                let kind = io.kind();
                why = match io.raw_os_error() {
                    Some(_) if kind_is_named(kind) => kind.to_string(),
                    _ => io.to_string(),
                };
                break;
            }
            why = e.to_string();
            cause = e.source();
        }
        Unreachable {
            addr: addr.to_string(),
            why,
        }
    }
}

/// Whether `kind` says more than "uncategorized" (the kinds an OS error maps to that a
/// person reads as the cause).
fn kind_is_named(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::ConnectionRefused
            | ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::NotConnected
            | ErrorKind::AddrNotAvailable
            | ErrorKind::HostUnreachable
            | ErrorKind::NetworkUnreachable
            | ErrorKind::NetworkDown
            | ErrorKind::TimedOut
            | ErrorKind::PermissionDenied
    )
}

/// An error with the exit code it must end the command with; prints as `inner` does.
#[derive(Debug)]
pub struct Coded {
    pub code: u8,
    inner: anyhow::Error,
}

impl std::fmt::Display for Coded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::errors::one_line(&self.inner))
    }
}

impl std::error::Error for Coded {}

/// `err`, ending the command with `code`.
pub fn coded(code: u8, err: impl Into<anyhow::Error>) -> anyhow::Error {
    anyhow::Error::new(Coded {
        code,
        inner: err.into(),
    })
}

/// `err` is input the command refuses itself (a flag value, a file): exit [`BAD_INPUT`].
pub fn bad_input(err: impl Into<anyhow::Error>) -> anyhow::Error {
    coded(BAD_INPUT, err)
}

/// The exit code `err` ends the command with (see the module's table): the first cause that
/// says, from the outside in; [`OTHER`] when none does.
pub fn code_of(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if let Some(c) = cause.downcast_ref::<Coded>() {
            return c.code;
        }
        if let Some(c) = cause.downcast_ref::<CallFailed>() {
            return for_status(c.status.code(), c.status.message());
        }
        if let Some(s) = cause.downcast_ref::<tonic::Status>() {
            return for_status(s.code(), s.message());
        }
        if cause.is::<Unreachable>()
            || cause.is::<tonic::transport::Error>()
            || cause
                .downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
            || matches!(
                cause.downcast_ref::<faas_common::serve::ServeError>(),
                Some(faas_common::serve::ServeError::Connect { .. })
            )
        {
            return UNAVAILABLE;
        }
    }
    OTHER
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Status;

    fn of(status: Status) -> u8 {
        code_of(&call_failed("invoke x")(status))
    }

    #[test]
    fn each_status_has_its_code() {
        assert_eq!(of(Status::not_found("function x not found")), NOT_FOUND);
        assert_eq!(of(Status::invalid_argument("event too large")), BAD_INPUT);
        assert_eq!(of(Status::out_of_range("n")), BAD_INPUT);
        assert_eq!(of(Status::unavailable("node lost")), UNAVAILABLE);
        assert_eq!(
            of(Status::resource_exhausted("account a is over its limit")),
            UNAVAILABLE
        );
        assert_eq!(
            of(Status::resource_exhausted(
                "function m ran out of memory (its limit is 64 MiB): x; the function may have run"
            )),
            FUNCTION_ERROR
        );
        assert_eq!(
            of(Status::unknown("function f failed: exit 1")),
            FUNCTION_ERROR
        );
        assert_eq!(of(Status::deadline_exceeded("timed out")), TIMEOUT);
        assert_eq!(of(Status::cancelled("Timeout expired")), TIMEOUT);
        assert_eq!(of(Status::cancelled("the client went away")), OTHER);
        assert_eq!(of(Status::unauthenticated("no key")), AUTH);
        assert_eq!(of(Status::permission_denied("scope admin")), AUTH);
        assert_eq!(of(Status::failed_precondition("alias names it")), OTHER);
        assert_eq!(of(Status::internal("bug")), OTHER);
        // A bare status, under context, decides too.
        let bare = anyhow::Error::new(Status::not_found("x")).context("outer");
        assert_eq!(code_of(&bare), NOT_FOUND);
    }

    #[test]
    fn other_failures_have_theirs() {
        assert_eq!(code_of(&anyhow::anyhow!("cannot write x")), OTHER);
        let refused = std::io::Error::from_raw_os_error(libc::ECONNREFUSED);
        let unreachable = Unreachable::new("127.0.0.1:1", &refused);
        assert_eq!(
            unreachable.to_string(),
            "cannot reach the API server at 127.0.0.1:1: connection refused (is `faas up` \
             running? --apiserver or FAAS_APISERVER names another)"
        );
        assert_eq!(code_of(&anyhow::Error::new(unreachable)), UNAVAILABLE);
        let dns = std::io::Error::other("failed to lookup address information: Name unknown");
        assert_eq!(
            Unreachable::new("x.invalid:1", &dns).why,
            "failed to lookup address information: Name unknown"
        );
        assert_eq!(code_of(&anyhow::Error::new(refused)), UNAVAILABLE);
        let input = bad_input(anyhow::anyhow!("--route-id: not ASCII")).context("invoke");
        assert_eq!(code_of(&input), BAD_INPUT);
        assert_eq!(
            crate::errors::one_line(&input),
            "invoke: --route-id: not ASCII"
        );
        assert_eq!(
            code_of(&coded(TIMEOUT, anyhow::anyhow!("still running"))),
            TIMEOUT
        );
    }

    #[test]
    fn a_call_failure_prints_as_one_line_with_its_code() {
        let e = call_failed("deploy x")(Status::invalid_argument("bad memory"));
        assert_eq!(e.to_string(), "deploy x: InvalidArgument: bad memory");
        let e = call_failed("")(Status::not_found("function nope not found"));
        assert_eq!(e.to_string(), "NotFound: function nope not found");
    }

    #[test]
    fn codes_are_read_by_their_canonical_names() {
        assert_eq!(code_named("NOT_FOUND"), Some(Code::NotFound));
        assert_eq!(
            code_named("DEADLINE_EXCEEDED"),
            Some(Code::DeadlineExceeded)
        );
        assert_eq!(code_named("UNKNOWN"), Some(Code::Unknown));
        assert_eq!(code_named("Unavailable"), Some(Code::Unavailable));
        assert_eq!(code_named("NOPE"), None);
        assert_eq!(code_named(""), None);
    }
}
