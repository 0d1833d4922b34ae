//! `hello`: greets the event's `name` (default "world").

use super::event::Event;
use super::{HandlerError, json_body};

/// `{"message":"Hello, <name>!"}`.
pub fn run(event: &Event) -> Result<Vec<u8>, HandlerError> {
    let name = event.string("name", "world")?;
    Ok(json_body(
        serde_json::json!({ "message": format!("Hello, {name}!") }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greets_by_name_or_the_world() {
        let body = run(&Event::parse(br#"{"name":"Ada"}"#).unwrap()).unwrap();
        assert_eq!(body, br#"{"message":"Hello, Ada!"}"#);
        let body = run(&Event::parse(b"").unwrap()).unwrap();
        assert_eq!(body, br#"{"message":"Hello, world!"}"#);
        let err = run(&Event::parse(br#"{"name":3}"#).unwrap()).unwrap_err();
        assert_eq!(err.code(), "BadEvent");
    }
}
