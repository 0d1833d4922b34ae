//! The codecs every generated server and client uses: prost encoding, with a decode error
//! mapped to the status whose fault it is.
//!
//! `tonic_prost::ProstCodec` answers a message that does not decode (a string field that is
//! not UTF-8, a truncated varint, a wrong wire type) with INTERNAL, as if the receiver were
//! broken. Which end is at fault depends on who decodes:
//!
//! - a **server** decodes requests: a request that is not a valid message is the caller's
//!   mistake, so [`ServerCodec`] answers `INVALID_ARGUMENT` ("the request body is not a valid
//!   `faas.container.v1.InvokeRequest` message: …"), and the caller knows not to retry it;
//! - a **client** decodes replies: a reply that is not a valid message means the server speaks
//!   another version of the protocol, so [`ClientCodec`] answers `INTERNAL` and says so.
//!
//! `build.rs` generates every server with [`ServerCodec`] and every client with
//! [`ClientCodec`]; encoding is prost's ([`tonic_prost::ProstEncoder`]). The messages' full
//! protobuf names come from `prost::Name` (generated with `enable_type_names`).
//!
//! [`RawCodec`] and [`call_raw`] send bytes as they are, for the tests that prove a server
//! refuses an undecodable body (a typed client cannot produce one).

use std::fmt;
use std::marker::PhantomData;

use prost::bytes::{Buf, BufMut};
use prost::{Message, Name};
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic_prost::ProstEncoder;

/// Which end decodes, and so whose fault an undecodable message is.
pub trait Side: Send + 'static {
    /// The status for a message named `full_name` that did not decode because of `error`.
    fn undecodable(full_name: &str, error: &prost::DecodeError) -> Status;
}

/// A server: it decodes requests, so an undecodable one is the caller's fault.
#[derive(Clone, Copy, Debug, Default)]
pub struct Server;

/// A client: it decodes replies, so an undecodable one is the server's fault.
#[derive(Clone, Copy, Debug, Default)]
pub struct Client;

impl Side for Server {
    fn undecodable(full_name: &str, error: &prost::DecodeError) -> Status {
        Status::invalid_argument(format!("{}: {error}", not_valid_request(full_name)))
    }
}

/// How a server's refusal of an undecodable `full_name` request begins.
fn not_valid_request(full_name: &str) -> String {
    format!("the request body is not a valid {full_name} message")
}

impl Side for Client {
    fn undecodable(full_name: &str, error: &prost::DecodeError) -> Status {
        Status::internal(format!(
            "the reply is not a valid {full_name} message: {error} (does the server speak \
             another version of the protocol?)"
        ))
    }
}

/// Names types without holding them (and without tying `Send`/`Sync` to them).
type Marker<T> = PhantomData<fn() -> T>;

/// Prost encoding and decoding of `T` out and `U` in, decode errors mapped by side `S`.
pub struct PlatformCodec<T, U, S> {
    _pd: Marker<(T, U, S)>,
}

/// The codec of generated servers (`T` the reply, `U` the request).
pub type ServerCodec<T, U> = PlatformCodec<T, U, Server>;

/// The codec of generated clients (`T` the request, `U` the reply).
pub type ClientCodec<T, U> = PlatformCodec<T, U, Client>;

impl<T, U, S> Default for PlatformCodec<T, U, S> {
    fn default() -> Self {
        PlatformCodec { _pd: PhantomData }
    }
}

impl<T, U, S> Clone for PlatformCodec<T, U, S> {
    fn clone(&self) -> Self {
        PlatformCodec::default()
    }
}

impl<T, U, S> fmt::Debug for PlatformCodec<T, U, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PlatformCodec")
    }
}

impl<T, U, S> Codec for PlatformCodec<T, U, S>
where
    T: Message + Send + 'static,
    U: Message + Name + Default + Send + 'static,
    S: Side,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = CheckedDecoder<U, S>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        CheckedDecoder { _pd: PhantomData }
    }
}

/// Decodes a `U` with prost; a decode error becomes `S`'s status.
pub struct CheckedDecoder<U, S> {
    _pd: Marker<(U, S)>,
}

impl<U, S> fmt::Debug for CheckedDecoder<U, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CheckedDecoder")
    }
}

impl<U, S> Decoder for CheckedDecoder<U, S>
where
    U: Message + Name + Default,
    S: Side,
{
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        U::decode(buf)
            .map(Some)
            .map_err(|e| S::undecodable(&U::full_name(), &e))
    }
}

/// Sends `Vec<u8>` bodies as they are and returns a reply's bytes undecoded.
#[derive(Clone, Copy, Debug, Default)]
pub struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        Ok(Some(buf.copy_to_bytes(buf.remaining()).to_vec()))
    }
}

/// Calls the unary method `path` (`/package.Service/Method`) with `body` as the request
/// message's bytes, whatever they are, and returns the reply's bytes. For tests and
/// diagnostics: this is how to send a body no typed client can encode. `channel` is a
/// `Channel`, or one wrapped with an interceptor (e.g. one that adds the cluster token).
pub async fn call_raw<T>(channel: T, path: &'static str, body: Vec<u8>) -> Result<Vec<u8>, Status>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: tonic::codegen::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    <T::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(format!("cannot reach the server: {}", e.into())))?;
    grpc.unary(
        tonic::Request::new(body),
        PathAndQuery::from_static(path),
        RawCodec,
    )
    .await
    .map(tonic::Response::into_inner)
}

/// Bytes that are not a valid message of any type whose field 1 is a `string` (the first
/// field of most requests here): field 1, length-delimited, holding bytes that are not UTF-8.
pub const NOT_UTF8_FIELD_1: &[u8] = &[0x0a, 0x02, 0xff, 0xfe];

/// Sends the unary method `path`, whose request is the message `full_name` with a `string`
/// field 1, a body that does not decode ([`NOT_UTF8_FIELD_1`]), and checks that the server
/// refuses it with INVALID_ARGUMENT naming the message; `Err` says what came instead. For
/// the tests of every server built on these codecs.
pub async fn check_refuses_undecodable(
    channel: tonic::transport::Channel,
    path: &'static str,
    full_name: &str,
) -> Result<(), String> {
    match call_raw(channel, path, NOT_UTF8_FIELD_1.to_vec()).await {
        Ok(reply) => Err(format!(
            "{path} accepted an undecodable body ({} reply bytes)",
            reply.len()
        )),
        Err(s)
            if s.code() == tonic::Code::InvalidArgument
                && s.message().starts_with(&not_valid_request(full_name)) =>
        {
            Ok(())
        }
        Err(s) => Err(format!(
            "{path} answered an undecodable {full_name} with {:?} {:?}, not INVALID_ARGUMENT \
             \"{}: …\"",
            s.code(),
            s.message(),
            not_valid_request(full_name)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decode_error_is_the_callers_fault_at_a_server_and_the_servers_at_a_client() {
        let error = crate::container::InvokeRequest::decode(NOT_UTF8_FIELD_1).unwrap_err();
        let s = Server::undecodable("faas.container.v1.InvokeRequest", &error);
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
        assert!(
            s.message().starts_with(
                "the request body is not a valid faas.container.v1.InvokeRequest message: "
            ),
            "{}",
            s.message()
        );
        assert!(s.message().contains("UTF-8"), "{}", s.message());
        let c = Client::undecodable("faas.container.v1.InvokeReply", &error);
        assert_eq!(c.code(), tonic::Code::Internal);
        assert!(
            c.message()
                .starts_with("the reply is not a valid faas.container.v1.InvokeReply message"),
            "{}",
            c.message()
        );
    }

    #[test]
    fn messages_know_their_protobuf_names() {
        assert_eq!(
            crate::nodeservoceproto::InvokeFunctionRequest::full_name(),
            "nodeservoceproto.InvokeFunctionRequest"
        );
        assert_eq!(
            crate::container::InvokeRequest::full_name(),
            "faas.container.v1.InvokeRequest"
        );
    }
}
