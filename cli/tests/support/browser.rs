//! A real headless Chromium, driven over the DevTools protocol (CDP) for the dashboard test.
//!
//! The browser is started with `--remote-debugging-port=0` and says on stderr where its
//! DevTools websocket listens; this module speaks just enough websocket (RFC 6455: the
//! upgrade, masked text frames out, text and ping frames in) and CDP (`Target.createTarget`,
//! a flattened session, `Runtime.evaluate`) to open a page and read its DOM. Nothing else
//! is needed for one test, so no crate of its own.
//!
//! Finding the browser (and skipping without it) is `faas_testkit::browser`'s.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader as AsyncBufReader};
use tokio::net::TcpStream;

/// How long the browser has to say where DevTools listens.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one CDP call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

pub use faas_testkit::browser::find_or_skip;

/// A running headless browser with one DevTools connection.
pub struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    ws: Ws,
    next_id: u64,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A page (a CDP session attached to one tab).
pub struct Page {
    session: String,
}

impl Browser {
    /// Starts `binary` headless with a fresh profile and connects to its DevTools.
    pub async fn start(binary: &std::path::Path) -> Browser {
        let profile = tempfile::tempdir().expect("a temporary profile directory");
        let mut child = faas_testkit::browser::headless(binary, profile.path(), 1400, 1000)
            .args([
                "--remote-debugging-port=0",
                "--remote-debugging-address=127.0.0.1",
                "about:blank",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut said = Vec::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.split("DevTools listening on ").nth(1) {
                    // The loop goes on draining, so the browser never blocks on a full pipe.
                    let _ = tx.send(Ok(url.trim().to_string()));
                } else if said.len() < 20 {
                    said.push(line);
                }
            }
            let _ = tx.send(Err(said.join("\n")));
        });
        let url = match tokio::task::spawn_blocking(move || rx.recv_timeout(START_TIMEOUT))
            .await
            .unwrap()
        {
            Ok(Ok(url)) => url,
            Ok(Err(said)) => {
                let _ = child.kill();
                panic!("the browser stopped before DevTools listened; it said:\n{said}")
            }
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "the browser did not say where DevTools listens within {} s",
                    START_TIMEOUT.as_secs()
                )
            }
        };
        let ws = Ws::connect(&url).await;
        Browser {
            child,
            _profile: profile,
            ws,
            next_id: 0,
        }
    }

    /// One CDP call (on `session`, or the browser): its `result`, or the error it answered.
    pub async fn call(
        &mut self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            message["sessionId"] = s.into();
        }
        self.ws.send(&message.to_string()).await;
        let answer = tokio::time::timeout(CALL_TIMEOUT, async {
            loop {
                let text = self.ws.recv().await?;
                let value: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
                if value["id"].as_u64() == Some(id) {
                    return Ok::<Value, String>(value);
                }
            }
        })
        .await
        .map_err(|_| format!("{method}: no answer within {} s", CALL_TIMEOUT.as_secs()))??;
        match answer.get("error") {
            Some(e) => Err(format!("{method}: {e}")),
            None => Ok(answer["result"].clone()),
        }
    }

    /// Opens `url` in a new tab.
    pub async fn open(&mut self, url: &str) -> Page {
        let target = self
            .call(None, "Target.createTarget", json!({ "url": url }))
            .await
            .expect("a new tab");
        let attached = self
            .call(
                None,
                "Target.attachToTarget",
                json!({ "targetId": target["targetId"], "flatten": true }),
            )
            .await
            .expect("attached to the tab");
        Page {
            session: attached["sessionId"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        }
    }

    /// The value of `expression` in `page` (awaited if a promise), as JSON.
    pub async fn eval(&mut self, page: &Page, expression: &str) -> Result<Value, String> {
        let result = self
            .call(
                Some(&page.session),
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
            )
            .await?;
        if let Some(e) = result.get("exceptionDetails") {
            return Err(format!("{expression}: threw {e}"));
        }
        Ok(result["result"]["value"].clone())
    }

    /// A PNG of `page` as it is drawn now.
    pub async fn screenshot(&mut self, page: &Page) -> Vec<u8> {
        let shot = self
            .call(
                Some(&page.session),
                "Page.captureScreenshot",
                json!({ "format": "png", "captureBeyondViewport": true }),
            )
            .await
            .expect("a screenshot");
        base64_decode(shot["data"].as_str().unwrap_or_default())
    }
}

/// Standard base64, as CDP sends binary data.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for v in text.bytes().filter_map(value) {
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// A websocket client connection (text messages only).
struct Ws {
    stream: AsyncBufReader<TcpStream>,
}

impl Ws {
    /// Connects to `ws://HOST:PORT/PATH` and upgrades.
    async fn connect(url: &str) -> Ws {
        let rest = url.strip_prefix("ws://").expect("a ws:// DevTools address");
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        let tcp = TcpStream::connect(host)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to DevTools at {host}: {e}"));
        let mut stream = AsyncBufReader::new(tcp);
        let request = format!(
            "GET /{path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream
            .get_mut()
            .write_all(request.as_bytes())
            .await
            .unwrap();
        let mut status = String::new();
        stream.read_line(&mut status).await.unwrap();
        assert!(
            status.contains(" 101 "),
            "DevTools refused the websocket upgrade: {status}"
        );
        loop {
            let mut line = String::new();
            stream.read_line(&mut line).await.unwrap();
            if line.trim().is_empty() {
                break;
            }
        }
        Ws { stream }
    }

    /// Sends one text message (masked, as a client must).
    async fn send(&mut self, text: &str) {
        let payload = text.as_bytes();
        let mut frame = vec![0x81u8];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n < 65_536 => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let mask = [0x5a, 0x13, 0xc7, 0x88];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.get_mut().write_all(&frame).await.unwrap();
    }

    /// The next text message (pings answered, fragments joined).
    async fn recv(&mut self) -> Result<String, String> {
        let mut message = Vec::new();
        loop {
            let mut head = [0u8; 2];
            self.stream
                .read_exact(&mut head)
                .await
                .map_err(|e| format!("DevTools connection lost: {e}"))?;
            let (fin, opcode) = (head[0] & 0x80 != 0, head[0] & 0x0f);
            let mut len = u64::from(head[1] & 0x7f);
            if len == 126 {
                let mut b = [0u8; 2];
                self.stream
                    .read_exact(&mut b)
                    .await
                    .map_err(|e| e.to_string())?;
                len = u64::from(u16::from_be_bytes(b));
            } else if len == 127 {
                let mut b = [0u8; 8];
                self.stream
                    .read_exact(&mut b)
                    .await
                    .map_err(|e| e.to_string())?;
                len = u64::from_be_bytes(b);
            }
            let mask = if head[1] & 0x80 != 0 {
                let mut m = [0u8; 4];
                self.stream
                    .read_exact(&mut m)
                    .await
                    .map_err(|e| e.to_string())?;
                Some(m)
            } else {
                None
            };
            let mut payload = vec![0u8; len as usize];
            self.stream
                .read_exact(&mut payload)
                .await
                .map_err(|e| e.to_string())?;
            if let Some(m) = mask {
                payload
                    .iter_mut()
                    .enumerate()
                    .for_each(|(i, b)| *b ^= m[i % 4]);
            }
            match opcode {
                0x8 => return Err("DevTools closed the connection".into()),
                0x9 => {
                    let mut pong = vec![0x8a, 0x80 | payload.len() as u8, 0, 0, 0, 0];
                    pong.extend_from_slice(&payload);
                    self.stream
                        .get_mut()
                        .write_all(&pong)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                0xa => {}
                _ => {
                    message.extend_from_slice(&payload);
                    if fin {
                        return String::from_utf8(message).map_err(|e| e.to_string());
                    }
                }
            }
        }
    }
}
