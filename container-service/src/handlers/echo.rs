//! `echo`: the reply body is the event bytes unchanged (any bytes, JSON or not).

/// Returns the event as the body.
pub fn run(event: Vec<u8>) -> Vec<u8> {
    event
}

#[cfg(test)]
mod tests {
    #[test]
    fn echoes_any_bytes() {
        assert_eq!(super::run(b"\x00not json".to_vec()), b"\x00not json");
    }
}
