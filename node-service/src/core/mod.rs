//! The node's pure rules: no async, no I/O, no clock (time, where a rule needs it, is an
//! argument). The [`crate::service`] layer applies them.

pub mod validate;
