//! TEMPORARY stub; the real framing lands from branch `codec`.
#![allow(missing_docs, clippy::all)]
use bytes::{Buf, BufMut, Bytes, BytesMut};
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LengthHeader {
    Binary2,
    Ascii4,
}
impl std::str::FromStr for LengthHeader {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "binary2" => Ok(LengthHeader::Binary2),
            "ascii4" => Ok(LengthHeader::Ascii4),
            _ => Err("binary2|ascii4".into()),
        }
    }
}
#[derive(Debug)]
pub enum FrameError {
    TooLarge { len: usize, max: usize },
    BadLength,
    Io(std::io::Error),
}
impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}
impl From<std::io::Error> for FrameError {
    fn from(e: std::io::Error) -> Self {
        FrameError::Io(e)
    }
}
pub struct FrameCodec {
    header: LengthHeader,
    max: usize,
}
impl FrameCodec {
    pub fn new(header: LengthHeader, max: usize) -> Self {
        FrameCodec { header, max }
    }
}
impl tokio_util::codec::Decoder for FrameCodec {
    type Item = Bytes;
    type Error = FrameError;
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        let _ = self.header;
        if src.len() < 2 {
            return Ok(None);
        }
        let len = u16::from_be_bytes([src[0], src[1]]) as usize;
        if len > self.max {
            return Err(FrameError::TooLarge { len, max: self.max });
        }
        if src.len() < 2 + len {
            return Ok(None);
        }
        src.advance(2);
        Ok(Some(src.split_to(len).freeze()))
    }
}
pub fn encode_frame(_h: LengthHeader, body: &[u8], out: &mut BytesMut) -> Result<(), FrameError> {
    out.put_u16(body.len() as u16);
    out.extend_from_slice(body);
    Ok(())
}
