//! A small ISO 8583 client: what `antaca send` uses to let a newcomer (or a
//! script) send one message and see the answer, card data masked.

use crate::iso8583::{is_sensitive, Message, Spec};
use crate::net::framing::{encode_frame, FrameCodec, LengthHeader};
use crate::security::pan::mask_pan;
use bytes::BytesMut;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use tokio_util::codec::Decoder;

/// Sends `message` to `addr` and waits for one answer.
pub fn send(
    addr: &str,
    spec: &Spec,
    header: LengthHeader,
    message: &Message,
    timeout: Duration,
) -> Result<Message, Box<dyn std::error::Error + Send + Sync>> {
    let mut body = BytesMut::new();
    spec.encode(message, &mut body)?;
    let mut frame = BytesMut::new();
    encode_frame(header, &body, &mut frame)?;
    let mut stream =
        TcpStream::connect(addr).map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.write_all(&frame)?;
    let mut codec = FrameCodec::new(header, 64 * 1024);
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        if let Some(frame) = codec.decode(&mut buf)? {
            return Ok(spec.decode(&frame)?);
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err("the server closed the connection without answering".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// One line per field, card data masked (field 2 as first 6 / last 4, the rest as ***).
pub fn describe(message: &Message) -> String {
    let mut out = format!("MTI {}\n", String::from_utf8_lossy(&message.mti()));
    for (n, value) in message.fields() {
        let shown = if n == 2 {
            mask_pan(value)
        } else if is_sensitive(n) {
            "***".to_string()
        } else if value.iter().all(|b| (0x20..0x7f).contains(b)) {
            String::from_utf8_lossy(value).into_owned()
        } else {
            format!("0x{}", hex::encode_upper(value))
        };
        out.push_str(&format!("  {n:>3}: {shown}\n"));
    }
    out
}
