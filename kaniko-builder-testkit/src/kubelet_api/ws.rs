//! The server side of RFC 6455, as little as the channel protocol needs.
//!
//! Hand-written rather than tungstenite because a kubelet must go on sending after the client's
//! close frame: in `v4.channel.k8s.io` that frame only means "stdin is done", and the status
//! (channel 3) follows it. tungstenite answers a close frame at once and refuses to send
//! anything after it; Go's `x/net/websocket`, which the kubelet's streaming server is built
//! on, does neither.

use base64::Engine as _;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

/// The largest message accepted from a client (stdin arrives in small frames anyway).
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
/// Close frame opcode.
pub(super) const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
/// Pong frame opcode.
pub(super) const OP_PONG: u8 = 0xA;

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`.
pub(super) fn accept_key(key: &str) -> String {
    const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    let digest = ring::digest::digest(
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        format!("{key}{GUID}").as_bytes(),
    );
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

/// A message from the client (fragments already joined).
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Message {
    /// A binary message: channel byte, then data.
    Binary(Vec<u8>),
    /// A text message (not part of the v4 protocol; ignored by the session).
    Text(Vec<u8>),
    /// A ping with its payload, to be answered with a pong.
    Ping(Vec<u8>),
    /// A pong.
    Pong,
    /// A close frame.
    Close,
}

/// Reads messages from a client.
#[derive(Debug)]
pub(super) struct Reader<R> {
    inner: R,
    /// A fragmented data message being joined: opcode and data so far.
    partial: Option<(u8, Vec<u8>)>,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    pub(super) fn new(inner: R) -> Self {
        Reader { inner, partial: None }
    }

    /// The next message; `None` when the connection ended between frames.
    pub(super) async fn next(&mut self) -> std::io::Result<Option<Message>> {
        loop {
            let mut head = [0u8; 2];
            match self.inner.read(&mut head[..1]).await? {
                0 => return Ok(None),
                _ => self.inner.read_exact(&mut head[1..]).await?,
            };
            let fin = head[0] & 0x80 != 0;
            let opcode = head[0] & 0x0F;
            let masked = head[1] & 0x80 != 0;
            let len = match head[1] & 0x7F {
                126 => u64::from(self.inner.read_u16().await?),
                127 => self.inner.read_u64().await?,
                n => u64::from(n),
            };
            let len = usize::try_from(len)
                .ok()
                .filter(|n| *n <= MAX_MESSAGE)
                .ok_or_else(|| invalid("websocket frame too large"))?;
            let mut mask = [0u8; 4];
            if masked {
                self.inner.read_exact(&mut mask).await?;
            }
            let mut payload = vec![0u8; len];
            self.inner.read_exact(&mut payload).await?;
            if masked {
                for (i, b) in payload.iter_mut().enumerate() {
                    *b ^= mask[i % 4];
                }
            }
            match opcode {
                OP_CLOSE => return Ok(Some(Message::Close)),
                OP_PING => return Ok(Some(Message::Ping(payload))),
                OP_PONG => return Ok(Some(Message::Pong)),
                OP_TEXT | OP_BINARY if self.partial.is_none() => {
                    if fin {
                        return Ok(Some(data_message(opcode, payload)));
                    }
                    self.partial = Some((opcode, payload));
                }
                OP_CONTINUATION => {
                    let (first, mut data) = self
                        .partial
                        .take()
                        .ok_or_else(|| invalid("websocket continuation without a first fragment"))?;
                    if data.len() + payload.len() > MAX_MESSAGE {
                        return Err(invalid("websocket message too large"));
                    }
                    data.extend_from_slice(&payload);
                    if fin {
                        return Ok(Some(data_message(first, data)));
                    }
                    self.partial = Some((first, data));
                }
                other => return Err(invalid(&format!("unexpected websocket opcode {other:#x}"))),
            }
        }
    }
}

fn data_message(opcode: u8, data: Vec<u8>) -> Message {
    if opcode == OP_TEXT {
        Message::Text(data)
    } else {
        Message::Binary(data)
    }
}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned())
}

/// Writes one unmasked, unfragmented frame and flushes.
pub(super) async fn write_frame<W: AsyncWrite + Unpin>(
    out: &mut W,
    opcode: u8,
    parts: &[&[u8]],
) -> std::io::Result<()> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut frame = Vec::with_capacity(len + 10);
    frame.push(0x80 | opcode);
    match len {
        0..=125 => frame.push(len as u8),
        126..=0xFFFF => {
            frame.push(126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            frame.push(127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    for part in parts {
        frame.extend_from_slice(part);
    }
    out.write_all(&frame).await?;
    out.flush().await
}

/// Writes a binary frame on `channel`.
pub(super) async fn write_channel<W: AsyncWrite + Unpin>(
    out: &mut W,
    channel: u8,
    data: &[u8],
) -> std::io::Result<()> {
    write_frame(out, OP_BINARY, &[&[channel], data]).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_rfc_6455() {
        // The example of RFC 6455, section 1.3.
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1u8, 2, 3, 4];
        let mut frame = vec![first];
        if payload.len() < 126 {
            frame.push(0x80 | payload.len() as u8);
        } else {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        frame
    }

    #[tokio::test]
    async fn reads_masked_fragmented_and_control_frames() -> std::io::Result<()> {
        let big = vec![7u8; 300];
        let mut wire = masked(0x80 | OP_BINARY, b"\x00abc");
        wire.extend(masked(OP_BINARY, b"\x00de"));
        wire.extend(masked(0x80 | OP_PING, b"p"));
        wire.extend(masked(0x80 | OP_CONTINUATION, b"f"));
        wire.extend(masked(0x80 | OP_BINARY, &big));
        wire.extend(masked(0x80 | OP_CLOSE, b""));
        let mut reader = Reader::new(&wire[..]);
        assert_eq!(reader.next().await?, Some(Message::Binary(b"\x00abc".to_vec())));
        assert_eq!(reader.next().await?, Some(Message::Ping(b"p".to_vec())));
        assert_eq!(reader.next().await?, Some(Message::Binary(b"\x00def".to_vec())));
        assert_eq!(reader.next().await?, Some(Message::Binary(big)));
        assert_eq!(reader.next().await?, Some(Message::Close));
        assert_eq!(reader.next().await?, None);
        Ok(())
    }

    #[tokio::test]
    async fn writes_length_forms() -> std::io::Result<()> {
        let mut out = Vec::new();
        write_channel(&mut out, 3, b"ok").await?;
        assert_eq!(out, b"\x82\x03\x03ok");
        let mut out = Vec::new();
        write_channel(&mut out, 1, &[0u8; 200]).await?;
        assert_eq!(&out[..4], &[0x82, 126, 0, 201]);
        let mut out = Vec::new();
        write_channel(&mut out, 1, &vec![0u8; 70_000]).await?;
        assert_eq!(&out[..2], &[0x82, 127]);
        assert_eq!(out.len(), 2 + 8 + 70_001);
        Ok(())
    }
}
