//! A mini-faas function speaking the `http` protocol, in Rust with the standard library only,
//! built statically into a `FROM scratch` image (see build.sh) and run on the Docker runtime.
//!
//! The platform's watchdog starts this once per container with `PORT` set, waits until
//! `127.0.0.1:$PORT` accepts connections, then sends each invocation as `POST /` whose body
//! is the event. A 2xx reply's body is the result; any other status is a function error
//! whose message is the body. Calls arrive concurrently, one kept-alive connection per call
//! in flight: each connection gets a thread.
//!
//! Event: `{"name": "Ada"}` (`name` optional). Result:
//! `{"greeting":"Hello, Ada!","runtime":"rust","thread":"conn-3"}`. A body that is not a
//! JSON object, or a `name` that is not a string, is answered 400 with `{"error": "..."}`.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::OnceLock;

/// `$GREETING`, or "Hello".
static GREETING: OnceLock<String> = OnceLock::new();

/// The largest request head (request line and headers) read.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// The largest event read (the platform's own limit is 6 MiB).
const MAX_BODY_BYTES: usize = 8 << 20;
/// How deep JSON arrays and objects may nest in an event.
const MAX_DEPTH: usize = 128;

fn main() {
    let Ok(Ok(port)) = std::env::var("PORT").map(|p| p.parse::<u16>()) else {
        eprintln!("rust-hello: PORT must be set to a port number (the watchdog sets it)");
        std::process::exit(2);
    };
    let greeting = GREETING.get_or_init(|| std::env::var("GREETING").unwrap_or("Hello".into()));
    let listener = match TcpListener::bind(("127.0.0.1", port)) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("rust-hello: cannot listen on 127.0.0.1:{port}: {e}");
            std::process::exit(1);
        }
    };
    println!("rust-hello: listening on 127.0.0.1:{port}");
    for (n, stream) in listener.incoming().enumerate() {
        let stream = match stream {
            Ok(stream) => stream,
            Err(e) => {
                eprintln!("rust-hello: accept failed: {e}");
                continue;
            }
        };
        let spawned = std::thread::Builder::new()
            .name(format!("conn-{n}"))
            .spawn(move || {
                if let Err(e) = serve(stream, greeting) {
                    eprintln!("rust-hello: connection {n}: {e}");
                }
            });
        if let Err(e) = spawned {
            eprintln!("rust-hello: cannot start a thread: {e}");
        }
    }
}

/// Serves the requests of one kept-alive connection until the peer closes it.
fn serve(stream: TcpStream, greeting: &str) -> std::io::Result<()> {
    // Each reply goes out in one write, at once (no 40 ms wait for a delayed ACK).
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        let request = match read_request(&mut reader) {
            Ok(Some(request)) => request,
            Ok(None) => return Ok(()),
            Err(Refused(status, message)) => {
                // The stream is out of step: answer, then close.
                respond(&mut writer, status, &error_json(&message), true)?;
                return Ok(());
            }
        };
        let (status, body) = if request.path != "/" {
            (
                404,
                error_json(&format!(
                    "no such path {:?}: POST / takes events",
                    request.path
                )),
            )
        } else if request.method != "POST" {
            (405, error_json("only POST / is served"))
        } else {
            handle(&request.body, greeting)
        };
        if status == 200 {
            println!("rust-hello: greeted for request {}", request.id);
        }
        respond(&mut writer, status, &body, request.close)?;
        if request.close {
            return Ok(());
        }
    }
}

/// The function itself: the event in, the status and the JSON reply out.
fn handle(event: &[u8], greeting: &str) -> (u16, String) {
    let Ok(text) = std::str::from_utf8(event) else {
        return (400, error_json("the event is not UTF-8 text"));
    };
    let event = if text.trim().is_empty() {
        Json::Object(Vec::new())
    } else {
        match parse_json(text) {
            Ok(value) => value,
            Err(e) => return (400, error_json(&format!("the event is not JSON: {e}"))),
        }
    };
    let Json::Object(fields) = event else {
        return (400, error_json("the event must be a JSON object"));
    };
    let name = match fields.iter().rev().find(|(key, _)| key == "name") {
        None => "world",
        Some((_, Json::String(name))) => name.as_str(),
        Some(_) => return (400, error_json("field `name` must be a string")),
    };
    let thread = std::thread::current();
    let body = format!(
        "{{\"greeting\":{},\"runtime\":\"rust\",\"thread\":{}}}",
        quote(&format!("{greeting}, {name}!")),
        quote(thread.name().unwrap_or("?"))
    );
    (200, body)
}

struct Request {
    method: String,
    path: String,
    id: String,
    body: Vec<u8>,
    /// Whether the connection ends after this request.
    close: bool,
}

/// A request that cannot be served: its status and why.
struct Refused(u16, String);

impl From<std::io::Error> for Refused {
    fn from(e: std::io::Error) -> Refused {
        Refused(400, format!("cannot read the request: {e}"))
    }
}

/// Reads one request; `None` when the peer closed the connection between requests.
fn read_request(reader: &mut BufReader<TcpStream>) -> Result<Option<Request>, Refused> {
    let mut head_bytes = 0;
    let mut line = String::new();
    // Blank lines before a request line are allowed (RFC 9112, 2.2).
    while line.trim().is_empty() {
        line.clear();
        if read_line(reader, &mut line, &mut head_bytes)? == 0 {
            return Ok(None);
        }
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(path), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Refused(400, "malformed request line".into()));
    };
    let mut request = Request {
        method: method.to_string(),
        path: path.to_string(),
        id: "?".to_string(),
        body: Vec::new(),
        close: version == "HTTP/1.0",
    };
    let mut length = 0usize;
    loop {
        line.clear();
        if read_line(reader, &mut line, &mut head_bytes)? == 0 {
            return Err(Refused(
                400,
                "the connection closed inside the request head".into(),
            ));
        }
        let header = line.trim_end_matches(['\r', '\n']);
        if header.is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else {
            return Err(Refused(400, "malformed header line".into()));
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => {
                length = value
                    .parse()
                    .map_err(|_| Refused(400, "bad Content-Length".into()))?;
            }
            "transfer-encoding" => {
                return Err(Refused(411, "send the event with a Content-Length".into()));
            }
            "connection" => {
                request.close = value.eq_ignore_ascii_case("close");
            }
            "x-request-id" => request.id = value.to_string(),
            _ => {}
        }
    }
    if length > MAX_BODY_BYTES {
        return Err(Refused(
            413,
            format!("the event is larger than {MAX_BODY_BYTES} bytes"),
        ));
    }
    request.body = vec![0; length];
    reader.read_exact(&mut request.body)?;
    Ok(Some(request))
}

/// Reads one head line, counting it against [`MAX_HEAD_BYTES`].
fn read_line(
    reader: &mut BufReader<TcpStream>,
    line: &mut String,
    used: &mut usize,
) -> Result<usize, Refused> {
    let left = (MAX_HEAD_BYTES - *used) as u64;
    let n = reader.by_ref().take(left).read_line(line)?;
    *used += n;
    if *used >= MAX_HEAD_BYTES {
        return Err(Refused(431, "the request head is too large".into()));
    }
    Ok(n)
}

/// Writes one reply, head and body, in a single write.
fn respond(out: &mut TcpStream, status: u16, body: &str, close: bool) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        _ => "Error",
    };
    let connection = if close { "Connection: close\r\n" } else { "" };
    let reply = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n{connection}\r\n{body}",
        body.len()
    );
    out.write_all(reply.as_bytes())
}

fn error_json(message: &str) -> String {
    format!("{{\"error\":{}}}", quote(message))
}

/// `s` as a JSON string literal.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A parsed JSON value (numbers are kept as their text: this function reads none).
#[derive(Debug, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Number(String),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

/// Parses one JSON document (RFC 8259), with white space around it.
fn parse_json(text: &str) -> Result<Json, String> {
    let mut parser = Parser {
        bytes: text.as_bytes(),
        at: 0,
    };
    let value = parser.value(0)?;
    parser.space();
    if parser.at < parser.bytes.len() {
        return Err(parser.error("unexpected text after the value"));
    }
    Ok(value)
}

struct Parser<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn error(&self, what: &str) -> String {
        format!("{what} at byte {}", self.at)
    }

    fn space(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.at) {
            self.at += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> bool {
        let found = self.bytes.get(self.at) == Some(&byte);
        self.at += usize::from(found);
        found
    }

    fn literal(&mut self, word: &str, value: Json) -> Result<Json, String> {
        if self.bytes[self.at..].starts_with(word.as_bytes()) {
            self.at += word.len();
            Ok(value)
        } else {
            Err(self.error("unexpected character"))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json, String> {
        if depth > MAX_DEPTH {
            return Err(self.error("nested too deeply"));
        }
        self.space();
        match self.bytes.get(self.at) {
            None => Err(self.error("unexpected end")),
            Some(b'n') => self.literal("null", Json::Null),
            Some(b't') => self.literal("true", Json::Bool(true)),
            Some(b'f') => self.literal("false", Json::Bool(false)),
            Some(b'"') => self.string().map(Json::String),
            Some(b'[') => {
                let mut items = Vec::new();
                self.list(b']', |p| {
                    items.push(p.value(depth + 1)?);
                    Ok(())
                })?;
                Ok(Json::Array(items))
            }
            Some(b'{') => {
                let mut fields = Vec::new();
                self.list(b'}', |p| {
                    p.space();
                    if p.bytes.get(p.at) != Some(&b'"') {
                        return Err(p.error("expected a string key"));
                    }
                    let key = p.string()?;
                    p.space();
                    if !p.eat(b':') {
                        return Err(p.error("expected :"));
                    }
                    fields.push((key, p.value(depth + 1)?));
                    Ok(())
                })?;
                Ok(Json::Object(fields))
            }
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.error("unexpected character")),
        }
    }

    /// The items of an array or object, from its opening byte to `close`: `item` reads
    /// one, and a `,` or `close` follows each.
    fn list(
        &mut self,
        close: u8,
        mut item: impl FnMut(&mut Self) -> Result<(), String>,
    ) -> Result<(), String> {
        self.at += 1;
        self.space();
        if self.eat(close) {
            return Ok(());
        }
        loop {
            item(self)?;
            self.space();
            if self.eat(close) {
                return Ok(());
            }
            if !self.eat(b',') {
                return Err(self.error(&format!("expected , or {}", char::from(close))));
            }
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.at;
        while self.bytes.get(self.at).is_some_and(u8::is_ascii_digit) {
            self.at += 1;
        }
        self.at - start
    }

    fn number(&mut self) -> Result<Json, String> {
        let start = self.at;
        self.eat(b'-');
        if !self.eat(b'0') && self.digits() == 0 {
            return Err(self.error("expected a digit"));
        }
        if self.eat(b'.') && self.digits() == 0 {
            return Err(self.error("expected a digit after ."));
        }
        if self.eat(b'e') || self.eat(b'E') {
            let _ = self.eat(b'+') || self.eat(b'-');
            if self.digits() == 0 {
                return Err(self.error("expected an exponent"));
            }
        }
        let text = std::str::from_utf8(&self.bytes[start..self.at]).expect("ASCII digits");
        Ok(Json::Number(text.to_string()))
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let digits = self
            .bytes
            .get(self.at..self.at + 4)
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| u32::from_str_radix(d, 16).ok().filter(|_| d.len() == 4))
            .ok_or_else(|| self.error("expected 4 hex digits after \\u"))?;
        self.at += 4;
        Ok(digits)
    }

    fn string(&mut self) -> Result<String, String> {
        self.at += 1; // the opening quote
        let mut out = String::new();
        loop {
            let start = self.at;
            while let Some(&b) = self.bytes.get(self.at) {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.at += 1;
            }
            // The input is a &str and the run stops only at ASCII bytes: valid UTF-8.
            out.push_str(std::str::from_utf8(&self.bytes[start..self.at]).expect("UTF-8"));
            match self.bytes.get(self.at) {
                None => return Err(self.error("unterminated string")),
                Some(b'"') => {
                    self.at += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.at += 1;
                    let escape = self.bytes.get(self.at).copied();
                    self.at += 1;
                    let c = match escape {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => {
                            let high = self.hex4()?;
                            let code = if (0xD800..0xDC00).contains(&high) {
                                if !(self.eat(b'\\') && self.eat(b'u')) {
                                    return Err(self.error("a lone surrogate"));
                                }
                                let low = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&low) {
                                    return Err(self.error("a lone surrogate"));
                                }
                                0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
                            } else {
                                high
                            };
                            char::from_u32(code).ok_or_else(|| self.error("a lone surrogate"))?
                        }
                        _ => return Err(self.error("a bad escape")),
                    };
                    out.push(c);
                }
                Some(_) => return Err(self.error("a control character in a string")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_values_parse() {
        assert_eq!(
            parse_json(r#" {"name": "A\u00e9\ud83d\ude00\n", "n": [1, -2.5e3, true, null]} "#),
            Ok(Json::Object(vec![
                ("name".into(), Json::String("Aé😀\n".into())),
                (
                    "n".into(),
                    Json::Array(vec![
                        Json::Number("1".into()),
                        Json::Number("-2.5e3".into()),
                        Json::Bool(true),
                        Json::Null,
                    ])
                ),
            ]))
        );
        for bad in [
            "",
            "{",
            "[1,]",
            "{\"a\" 1}",
            "01x",
            "\"\\ud800\"",
            "\"\t\"",
            "nul",
        ] {
            assert!(parse_json(bad).is_err(), "{bad:?}");
        }
        assert!(parse_json(&"[".repeat(10_000)).is_err());
    }

    #[test]
    fn events_are_greeted_or_refused() {
        let (status, body) = handle(br#"{"name": "Ada \"L\""}"#, "Hello");
        assert_eq!(status, 200);
        assert!(body.starts_with(r#"{"greeting":"Hello, Ada \"L\"!","runtime":"rust","#));
        assert!(handle(b"", "Hi").1.contains("Hi, world!"));
        assert_eq!(quote("a\u{1}\n\\"), r#""a\u0001\n\\""#);
        for (event, says) in [
            (&b"nope"[..], "the event is not JSON"),
            (b"[1]", "must be a JSON object"),
            (br#"{"name": 7}"#, "`name` must be a string"),
        ] {
            let (status, body) = handle(event, "Hello");
            assert_eq!(status, 400);
            assert!(body.contains(says), "{body}");
        }
    }
}
