//! Text from outside, made safe to put into an error message or a log line.
//!
//! A message must never echo unbounded input: a 1 MiB function name in a `NOT_FOUND` would
//! overflow a client's metadata limit (gRPC carries the message in a header). [`clip`] keeps
//! the first [`CLIP_BYTES`] bytes (on a character boundary) and says how much was cut.

use std::borrow::Cow;

/// The most bytes of one input an error message quotes.
pub const CLIP_BYTES: usize = 128;

/// `s` if it is at most [`CLIP_BYTES`] long, else its first bytes (cut on a character
/// boundary) followed by `…(N bytes)` giving the full length.
pub fn clip(s: &str) -> Cow<'_, str> {
    clip_to(s, CLIP_BYTES)
}

/// [`clip`] with another limit.
pub fn clip_to(s: &str, max: usize) -> Cow<'_, str> {
    if s.len() <= max {
        return Cow::Borrowed(s);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}…({} bytes)", &s[..end], s.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_kept_and_long_text_is_cut_with_its_length() {
        assert_eq!(clip("hello"), "hello");
        let long = "x".repeat(1 << 20);
        let c = clip(&long);
        assert!(c.len() < 160, "{}", c.len());
        assert!(c.ends_with("…(1048576 bytes)"), "{c}");
        // Never cut inside a character.
        let wide = "é".repeat(100);
        let c = clip_to(&wide, 5);
        assert!(c.starts_with("éé…"), "{c}");
    }
}
