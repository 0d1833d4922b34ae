//! The JSON event a handler receives: an object whose fields set the handler's parameters.
//! An empty event means every default; anything else that is not a JSON object, or a field
//! of the wrong type, is a `BadEvent` naming the field.

use serde_json::{Map, Value};

use super::HandlerError;

/// A parsed event.
#[derive(Debug, Default)]
pub struct Event(Map<String, Value>);

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl Event {
    /// Parses the event bytes (empty or blank = no fields).
    pub fn parse(bytes: &[u8]) -> Result<Event, HandlerError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Event::default());
        }
        match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Object(map)) => Ok(Event(map)),
            Ok(other) => Err(HandlerError::BadEvent(format!(
                "the event must be a JSON object, got {}",
                kind_of(&other)
            ))),
            Err(e) => Err(HandlerError::BadEvent(format!(
                "the event is not valid JSON: {e}"
            ))),
        }
    }

    /// String field `name`, or `default` when absent or null.
    pub fn string<'a>(&'a self, name: &str, default: &'a str) -> Result<&'a str, HandlerError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::String(s)) => Ok(s),
            Some(other) => Err(HandlerError::BadEvent(format!(
                "field `{name}` must be a string, got {}",
                kind_of(other)
            ))),
        }
    }

    /// Non-negative integer field `name`, or `default` when absent or null.
    pub fn uint(&self, name: &str, default: u64) -> Result<u64, HandlerError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v.as_u64().ok_or_else(|| {
                HandlerError::BadEvent(format!(
                    "field `{name}` must be a non-negative integer, got {v}"
                ))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_means_defaults_and_fields_are_typed() {
        let e = Event::parse(b"  ").unwrap();
        assert_eq!(e.uint("ms", 7).unwrap(), 7);
        assert_eq!(e.string("name", "world").unwrap(), "world");

        let e = Event::parse(br#"{"ms": 5, "name": "ann", "mb": "x", "neg": -1}"#).unwrap();
        assert_eq!(e.uint("ms", 7).unwrap(), 5);
        assert_eq!(e.string("name", "world").unwrap(), "ann");
        let err = e.uint("mb", 1).unwrap_err();
        assert!(err.to_string().contains("`mb`"), "{err}");
        assert_eq!(err.code(), "BadEvent");
        assert!(e.uint("neg", 1).is_err());
        assert!(e.string("ms", "").unwrap_err().to_string().contains("`ms`"));
    }

    #[test]
    fn non_objects_are_bad_events() {
        let err = Event::parse(b"not json").unwrap_err();
        assert!(err.to_string().contains("not valid JSON"), "{err}");
        let err = Event::parse(b"[1,2]").unwrap_err();
        assert!(err.to_string().contains("an array"), "{err}");
    }
}
