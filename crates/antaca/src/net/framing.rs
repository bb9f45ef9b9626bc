//! Length-header framing: each ISO 8583 message on the TCP stream is preceded
//! by its length, either 2 bytes big-endian or 4 ASCII digits.
//!
//! The header is a property of the network link, not of the message, so it
//! lives here and not in the codec (moov-io keeps them apart the same way).
#![warn(missing_docs)]

use std::fmt;
use std::str::FromStr;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// How the length of each frame is written before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LengthHeader {
    /// Two bytes, big-endian, counting the body (max 65535).
    #[default]
    Binary2,
    /// Four ASCII digits counting the body (max 9999).
    Ascii4,
}

impl LengthHeader {
    /// Size of the header in bytes.
    pub fn len(self) -> usize {
        match self {
            LengthHeader::Binary2 => 2,
            LengthHeader::Ascii4 => 4,
        }
    }

    /// Always false: a header is never empty (for clippy's `len_without_is_empty`).
    pub fn is_empty(self) -> bool {
        false
    }

    /// Largest body length the header can express.
    pub fn max_body(self) -> usize {
        match self {
            LengthHeader::Binary2 => 0xFFFF,
            LengthHeader::Ascii4 => 9999,
        }
    }
}

impl FromStr for LengthHeader {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "binary2" => Ok(LengthHeader::Binary2),
            "ascii4" => Ok(LengthHeader::Ascii4),
            other => Err(format!(
                "unknown length header '{other}': expected 'binary2' or 'ascii4'"
            )),
        }
    }
}

impl fmt::Display for LengthHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LengthHeader::Binary2 => "binary2",
            LengthHeader::Ascii4 => "ascii4",
        })
    }
}

/// Why a frame could not be read or written.
#[derive(Debug)]
pub enum FrameError {
    /// The announced (or supplied) body length exceeds the limit.
    TooLarge {
        /// Body length.
        len: usize,
        /// Limit (the configured `max_frame`, or what the header can express).
        max: usize,
    },
    /// An ASCII length header contains a non-digit.
    BadLength,
    /// The underlying socket failed.
    Io(std::io::Error),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooLarge { len, max } => {
                write!(f, "frame of {len} bytes exceeds the maximum of {max} bytes")
            }
            FrameError::BadLength => write!(f, "length header is not 4 ASCII digits"),
            FrameError::Io(e) => write!(f, "i/o error: {e}"),
        }
    }
}

impl std::error::Error for FrameError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FrameError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<std::io::Error> for FrameError {
    fn from(e: std::io::Error) -> Self {
        FrameError::Io(e)
    }
}

/// Parses a frame header at the start of `buf`; `Ok(None)` if it is not all there yet.
fn peek_length(header: LengthHeader, buf: &[u8]) -> Result<Option<usize>, FrameError> {
    match header {
        LengthHeader::Binary2 => match buf {
            [hi, lo, ..] => Ok(Some(usize::from(u16::from_be_bytes([*hi, *lo])))),
            _ => Ok(None),
        },
        LengthHeader::Ascii4 => match buf.get(..4) {
            None => Ok(None),
            Some(digits) => {
                let mut len = 0usize;
                for &d in digits {
                    if !d.is_ascii_digit() {
                        return Err(FrameError::BadLength);
                    }
                    len = len * 10 + usize::from(d - b'0');
                }
                Ok(Some(len))
            }
        },
    }
}

/// Appends `header` + `body` to `out`.
pub fn encode_frame(
    header: LengthHeader,
    body: &[u8],
    out: &mut BytesMut,
) -> Result<(), FrameError> {
    let len = body.len();
    if len > header.max_body() {
        return Err(FrameError::TooLarge {
            len,
            max: header.max_body(),
        });
    }
    out.reserve(header.len() + len);
    match header {
        LengthHeader::Binary2 => out.put_u16(len as u16),
        LengthHeader::Ascii4 => {
            let digits = [
                b'0' + (len / 1000 % 10) as u8,
                b'0' + (len / 100 % 10) as u8,
                b'0' + (len / 10 % 10) as u8,
                b'0' + (len % 10) as u8,
            ];
            out.extend_from_slice(&digits);
        }
    }
    out.extend_from_slice(body);
    Ok(())
}

/// A tokio codec that splits a byte stream into length-prefixed frame bodies.
#[derive(Debug, Clone)]
pub struct FrameCodec {
    header: LengthHeader,
    max_frame: usize,
}

impl FrameCodec {
    /// A codec for `header` that rejects bodies longer than `max_frame` bytes.
    pub fn new(header: LengthHeader, max_frame: usize) -> FrameCodec {
        FrameCodec { header, max_frame }
    }

    /// The length header in use.
    pub fn header(&self) -> LengthHeader {
        self.header
    }

    /// The largest body accepted, in bytes.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }
}

impl Decoder for FrameCodec {
    type Item = Bytes;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        let Some(len) = peek_length(self.header, src)? else {
            return Ok(None);
        };
        // Reject at once: waiting for an oversized body would let a peer pin memory.
        if len > self.max_frame {
            return Err(FrameError::TooLarge {
                len,
                max: self.max_frame,
            });
        }
        let total = self.header.len() + len;
        if src.len() < total {
            // Incomplete is normal flow; make room for the rest of this frame.
            src.reserve(total - src.len());
            return Ok(None);
        }
        src.advance(self.header.len());
        let body = src.split_to(len).freeze();
        // Leave room for the next header so the following read does not reallocate
        // just to learn the next length.
        src.reserve(self.header.len());
        Ok(Some(body))
    }
}

impl Encoder<Bytes> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, item: Bytes, dst: &mut BytesMut) -> Result<(), FrameError> {
        if item.len() > self.max_frame {
            return Err(FrameError::TooLarge {
                len: item.len(),
                max: self.max_frame,
            });
        }
        encode_frame(self.header, &item, dst)
    }
}
