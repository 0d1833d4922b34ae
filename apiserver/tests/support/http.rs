//! A tiny HTTP/1.1 client over a plain `TcpStream`, for the gateway's tests
//! (`#[path = "support/http.rs"] mod http;`): one request a connection (`Connection:
//! close`), the reply read until its `Content-Length` or chunked end, or the connection's.
//! Nothing is mocked: it speaks to the real server over a socket.

#![allow(dead_code)]

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A reply; `status` 0 when the server closed the connection without one.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    /// The first value of the header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The header `name`, which must be there.
    pub fn must(&self, name: &str) -> &str {
        self.header(name)
            .unwrap_or_else(|| panic!("no header {name} in {self:?}"))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text()))
    }

    /// The `error.code` of a JSON error body, checking its form.
    pub fn error_code(&self) -> String {
        let v = self.json();
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{v}"
        );
        v["error"]["code"].as_str().unwrap().to_string()
    }

    pub fn error_message(&self) -> String {
        self.json()["error"]["message"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

/// Sends `method path` with `headers` and `body` (its `Content-Length` added).
pub async fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut raw = head.into_bytes();
    raw.extend_from_slice(body);
    send_raw(addr, &raw).await
}

pub async fn get(addr: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    request(addr, "GET", path, headers, b"").await
}

pub async fn post(addr: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    request(addr, "POST", path, headers, body).await
}

/// Sends `raw` bytes as they are and reads one reply.
pub async fn send_raw(addr: &str, raw: &[u8]) -> Reply {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // The server may answer (and close) before it read everything: not an error here.
    let _ = stream.write_all(raw).await;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(reply) = parse(&buf) {
            return reply;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    parse_at_eof(&buf)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A reply's status, headers, and where its body starts.
type Head = (u16, Vec<(String, String)>, usize);

/// The status line and headers, and where the body starts.
fn head(buf: &[u8]) -> Option<Head> {
    let end = find(buf, b"\r\n\r\n")?;
    let text = String::from_utf8_lossy(&buf[..end]);
    let mut lines = text.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some((status, headers, end + 4))
}

/// A chunked body, when complete.
fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = find(rest, b"\r\n")?;
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&rest[..line])
                .split(';')
                .next()?
                .trim(),
            16,
        )
        .ok()?;
        rest = &rest[line + 2..];
        if size == 0 {
            return Some(body);
        }
        if rest.len() < size + 2 {
            return None;
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// A complete reply, if `buf` holds one.
fn parse(buf: &[u8]) -> Option<Reply> {
    let (status, headers, start) = head(buf)?;
    let reply = |body: Vec<u8>| Reply {
        status,
        headers: headers.clone(),
        body,
    };
    let value = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    if value("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        return dechunk(&buf[start..]).map(reply);
    }
    let length: usize = value("content-length")?.parse().ok()?;
    (buf.len() >= start + length).then(|| reply(buf[start..start + length].to_vec()))
}

/// What was read when the connection closed.
fn parse_at_eof(buf: &[u8]) -> Reply {
    if let Some(reply) = parse(buf) {
        return reply;
    }
    match head(buf) {
        Some((status, headers, start)) => Reply {
            status,
            headers,
            body: buf[start..].to_vec(),
        },
        None => Reply {
            status: 0,
            headers: Vec::new(),
            body: buf.to_vec(),
        },
    }
}
