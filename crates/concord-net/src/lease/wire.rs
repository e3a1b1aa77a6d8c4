//! The `/concord/lease/1` protocol on the wire: framing of requests and
//! responses on a libp2p stream ([`LeaseCodec`]) and the encoding of
//! [`concord_lease::Message`]s in them.
//!
//! A request carries one message (JSON); the response carries at most one
//! message back, encoded the same way, or JSON `null` ([`NO_REPLY`]): an acceptor answers a request with
//! a reply to that proposer if one is ready, otherwise it sends the reply
//! later as a request of its own. Both are read to the end of the stream,
//! bounded by [`MAX_LEASE_MESSAGE_BYTES`].
//!
//! This module owns the bytes and their bound. It must never act on a
//! message, and never hand out one that failed to decode: decoding yields a
//! typed [`WireError`] instead. (Rules the types cannot express, such as a
//! token above its ballot, are checked by the machines' `validate`.)

use std::io;

use concord_lease::Message;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use libp2p::request_response;
use thiserror::Error;

/// The protocol name.
pub(crate) const LEASE_PROTOCOL: StreamProtocol = StreamProtocol::new("/concord/lease/1");

/// Largest encoded lease message, request or response, in bytes. The
/// largest valid message (a promise listing [`concord_lease::MAX_PERMITS`]
/// holders of a resource with a name of [`concord_lease::MAX_RESOURCE_LEN`]
/// bytes and a handoff of [`concord_lease::MAX_HANDOFF_BYTES`]) takes under
/// 8 KiB.
pub const MAX_LEASE_MESSAGE_BYTES: usize = 16 * 1024;

/// Why bytes from a peer are not a lease message.
#[derive(Debug, Error)]
pub(crate) enum WireError {
    /// More than [`MAX_LEASE_MESSAGE_BYTES`].
    #[error("lease message of {0} bytes exceeds {MAX_LEASE_MESSAGE_BYTES}")]
    TooLarge(usize),
    /// Not the JSON of a (valid) message.
    #[error("undecodable lease message: {0}")]
    Decode(#[from] serde_json::Error),
}

/// The response that carries no message.
pub(crate) const NO_REPLY: &[u8] = b"null";

/// Encodes a message, as a request or as a response carrying it.
pub(crate) fn encode(message: &Message) -> Result<Vec<u8>, WireError> {
    bounded(serde_json::to_vec(message)?)
}

/// Decodes a request.
pub(crate) fn decode_request(bytes: &[u8]) -> Result<Message, WireError> {
    Ok(serde_json::from_slice(bounded_ref(bytes)?)?)
}

/// Decodes a response: a message, or none ([`NO_REPLY`]).
pub(crate) fn decode_response(bytes: &[u8]) -> Result<Option<Message>, WireError> {
    Ok(serde_json::from_slice(bounded_ref(bytes)?)?)
}

pub(crate) fn bounded(bytes: Vec<u8>) -> Result<Vec<u8>, WireError> {
    bounded_ref(&bytes)?;
    Ok(bytes)
}

pub(crate) fn bounded_ref(bytes: &[u8]) -> Result<&[u8], WireError> {
    if bytes.len() > MAX_LEASE_MESSAGE_BYTES {
        return Err(WireError::TooLarge(bytes.len()));
    }
    Ok(bytes)
}

/// Codec of `/concord/lease/1`: request and response are each the raw bytes
/// of one encoded message, ended by the end of the stream.
#[derive(Debug, Clone, Default)]
pub(crate) struct LeaseCodec;

async fn read_bounded<T: AsyncRead + Unpin + Send>(io: &mut T) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    io.take(MAX_LEASE_MESSAGE_BYTES as u64 + 1)
        .read_to_end(&mut buf)
        .await?;
    if buf.len() > MAX_LEASE_MESSAGE_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            WireError::TooLarge(buf.len()),
        ));
    }
    Ok(buf)
}

async fn write_all<T: AsyncWrite + Unpin + Send>(io: &mut T, bytes: &[u8]) -> io::Result<()> {
    io.write_all(bytes).await?;
    io.close().await
}

impl request_response::Codec for LeaseCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_bounded(io).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_bounded(io).await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_all(io, &request).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        response: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_all(io, &response).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use concord_lease::{Ballot, HolderInfo, MAX_PERMITS, MAX_RESOURCE_LEN, NodeId, Resource};

    use super::*;

    fn largest_promise() -> Message {
        let info = HolderInfo {
            holder: concord_lease::Holder {
                node: NodeId(u16::MAX),
                lease: concord_lease::LeaseId(u64::MAX),
            },
            token: Ballot::from_raw(u64::MAX).token(),
        };
        Message::Promise {
            resource: Resource::new("x".repeat(MAX_RESOURCE_LEN)).unwrap(),
            ballot: Ballot::from_raw(u64::MAX),
            holders: vec![info; MAX_PERMITS as usize],
            handoff: Some(concord_lease::Handoff {
                token: Ballot::from_raw(u64::MAX).token(),
                context: vec![u8::MAX; concord_lease::MAX_HANDOFF_BYTES],
            }),
        }
    }

    #[test]
    fn messages_round_trip_and_the_largest_fits() {
        let m = largest_promise();
        let bytes = encode(&m).unwrap();
        assert!(bytes.len() < 8 * 1024, "{} bytes", bytes.len());
        assert_eq!(decode_request(&bytes).unwrap(), m);
        assert_eq!(decode_response(&bytes).unwrap(), Some(m));
        assert_eq!(decode_response(NO_REPLY).unwrap(), None);
    }

    #[test]
    fn garbage_is_a_typed_error() {
        assert!(matches!(
            decode_request(b"\x00\xffnot json"),
            Err(WireError::Decode(_))
        ));
        // Well-formed JSON, invalid message: zero permits.
        let bad = br#"{"Prepare":{"resource":"r","ballot":65536,"limit":0}}"#;
        assert!(matches!(decode_request(bad), Err(WireError::Decode(_))));
        // A response must be a message or null.
        assert!(matches!(decode_response(b"42"), Err(WireError::Decode(_))));
        let huge = vec![b' '; MAX_LEASE_MESSAGE_BYTES + 1];
        assert!(matches!(decode_request(&huge), Err(WireError::TooLarge(_))));
    }

    #[test]
    fn codec_bounds_what_it_reads() {
        futures::executor::block_on(async {
            let mut codec = LeaseCodec;
            let mut ok = futures::io::Cursor::new(b"{}".to_vec());
            let read =
                request_response::Codec::read_request(&mut codec, &LEASE_PROTOCOL, &mut ok).await;
            assert_eq!(read.unwrap(), b"{}");
            let mut huge = futures::io::Cursor::new(vec![0u8; MAX_LEASE_MESSAGE_BYTES + 10]);
            let read =
                request_response::Codec::read_request(&mut codec, &LEASE_PROTOCOL, &mut huge).await;
            assert_eq!(read.unwrap_err().kind(), io::ErrorKind::InvalidData);
        });
    }
}
