//! Topics and chains on the command line (`faas.events.v1`, the API server's `api::events`),
//! one file per command:
//!
//! - [`emit`]: `faas emit TOPIC [--event JSON | --event-file FILE|-]`: delivers an event to
//!   every subscriber whose filter matches, each as an asynchronous call; prints one line per
//!   call (`FUNCTION INVOCATION_ID`), none when nobody listens.
//! - [`subscribe`]: `faas subscribe FUNCTION TOPIC [--filter FIELD=VALUE ...]`.
//! - [`unsubscribe`]: `faas unsubscribe FUNCTION TOPIC`.
//! - [`topics`]: `faas topics [TOPIC]`: the subscriptions with their filters.
//! - [`chain`]: `faas chain FUNCTION [--on-success F] [--on-failure F]`: sets (or, with no
//!   flag, shows) what runs after the function's asynchronous calls end.
//!
//! A refusal prints the server's code and message (naming the bad field) and exits with the
//! code of its kind (`faas_cli::exit`: 3 not found, 4 bad input, ...).

pub mod chain;
pub mod emit;
pub mod subscribe;
pub mod topics;
pub mod unsubscribe;
