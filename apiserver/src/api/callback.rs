//! Callbacks of asynchronous calls: which are accepted, and the HTTP `POST` that sends one.
//!
//! A callback is a function (`fn:NAME` in the API's text form, or a bare name) or an HTTP
//! URL whose host is a loopback address (`127.0.0.1`, `::1`, `localhost`): the API server
//! must not become a way to reach other machines for whoever may submit calls. Any other
//! host, another scheme, or a URL that does not parse is refused with `INVALID_ARGUMENT`
//! naming the field ([`parse`]).

use std::net::IpAddr;
use std::time::Duration;

use axum::http::Uri;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::service::async_calls::Callback;

/// How long a callback POST may take in all.
pub const POST_TIMEOUT: Duration = Duration::from_secs(10);

/// The callback of a request field (`on_success`, `on_failure`): empty is none, `http://…`
/// a URL (loopback only), anything else a function name.
pub fn parse(field: &str, text: &str) -> Result<Option<Callback>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    if !text.contains("://") {
        let name = text.strip_prefix("fn:").unwrap_or(text);
        let valid = !name.is_empty()
            && name.len() <= 128
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':'));
        return if valid {
            Ok(Some(Callback::Function(name.to_string())))
        } else {
            Err(format!(
                "{field}: {:?} is neither a function name nor an http:// URL",
                faas_common::text::clip(text)
            ))
        };
    }
    let uri: Uri = text.parse().map_err(|e| {
        format!(
            "{field}: {:?} is not a URL: {e}",
            faas_common::text::clip(text)
        )
    })?;
    if uri.scheme_str() != Some("http") {
        return Err(format!("{field}: only http:// callback URLs are supported"));
    }
    let host = uri
        .host()
        .unwrap_or("")
        .trim_start_matches('[')
        .trim_end_matches(']');
    let loopback = host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        return Err(format!(
            "{field}: a callback URL must be on loopback (127.0.0.1, ::1 or localhost), not {:?}",
            faas_common::text::clip(host)
        ));
    }
    Ok(Some(Callback::Url(text.to_string())))
}

/// POSTs `body` (JSON) to the loopback `url`; an answer other than 2xx is an error.
pub async fn post(url: &str, body: &[u8]) -> Result<(), String> {
    tokio::time::timeout(POST_TIMEOUT, post_now(url, body))
        .await
        .map_err(|_| format!("no answer in {} s", POST_TIMEOUT.as_secs()))?
}

async fn post_now(url: &str, body: &[u8]) -> Result<(), String> {
    let uri: Uri = url.parse().map_err(|e| format!("bad URL: {e}"))?;
    let host = uri.host().ok_or("no host")?;
    let port = uri.port_u16().unwrap_or(80);
    let addr = if host.starts_with('[') {
        format!("{host}:{port}")
    } else if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut stream = tokio::net::TcpStream::connect(&addr)
        .await
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream
        .write_all(head.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    stream.write_all(body).await.map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    stream
        .take(64 * 1024)
        .read_to_end(&mut answer)
        .await
        .map_err(|e| e.to_string())?;
    let line = String::from_utf8_lossy(&answer);
    let status = line.split_whitespace().nth(1).unwrap_or("");
    if status.starts_with('2') {
        Ok(())
    } else {
        Err(format!(
            "answered {:?}",
            faas_common::text::clip(line.lines().next().unwrap_or(""))
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_urls_and_function_names_are_accepted() {
        assert_eq!(parse("on_success", ""), Ok(None));
        assert_eq!(
            parse("on_success", "audit"),
            Ok(Some(Callback::Function("audit".into())))
        );
        assert_eq!(
            parse("on_success", "fn:audit:2"),
            Ok(Some(Callback::Function("audit:2".into())))
        );
        for ok in [
            "http://127.0.0.1:8080/done",
            "http://localhost/x",
            "http://[::1]:9/",
        ] {
            assert_eq!(
                parse("on_failure", ok),
                Ok(Some(Callback::Url(ok.into()))),
                "{ok}"
            );
        }
    }

    #[test]
    fn other_hosts_and_schemes_are_refused_naming_the_field() {
        for bad in [
            "http://example.com/hook",
            "http://10.0.0.1/x",
            "https://127.0.0.1/x",
            "ftp://127.0.0.1/x",
            "http://",
            "bad name!",
        ] {
            let e = parse("on_failure", bad).unwrap_err();
            assert!(e.starts_with("on_failure:"), "{bad}: {e}");
        }
    }
}
