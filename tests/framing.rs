//! Length-header framing: both headers, split reads, oversize, many frames per buffer.

use antaca::net::framing::{encode_frame, FrameCodec, FrameError, LengthHeader};
use bytes::{Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

fn framed(header: LengthHeader, bodies: &[&[u8]]) -> BytesMut {
    let mut out = BytesMut::new();
    for b in bodies {
        encode_frame(header, b, &mut out).expect("fits");
    }
    out
}

#[test]
fn header_parsing() {
    assert_eq!("binary2".parse::<LengthHeader>(), Ok(LengthHeader::Binary2));
    assert_eq!("ASCII4".parse::<LengthHeader>(), Ok(LengthHeader::Ascii4));
    assert!("ascii2".parse::<LengthHeader>().is_err());
    assert_eq!(LengthHeader::default(), LengthHeader::Binary2);
}

#[test]
fn encodes_both_headers() {
    let mut out = BytesMut::new();
    encode_frame(LengthHeader::Binary2, b"hello", &mut out).expect("fits");
    assert_eq!(&out[..], b"\x00\x05hello");
    let mut out = BytesMut::new();
    encode_frame(LengthHeader::Ascii4, b"hello", &mut out).expect("fits");
    assert_eq!(&out[..], b"0005hello");
    let big = vec![0u8; 10_000];
    assert!(matches!(
        encode_frame(LengthHeader::Ascii4, &big, &mut out),
        Err(FrameError::TooLarge {
            len: 10_000,
            max: 9999
        })
    ));
    let mut codec = FrameCodec::new(LengthHeader::Binary2, 100);
    let mut dst = BytesMut::new();
    codec
        .encode(Bytes::from_static(b"abc"), &mut dst)
        .expect("fits");
    assert_eq!(&dst[..], b"\x00\x03abc");
    assert!(matches!(
        codec.encode(Bytes::from(vec![0u8; 101]), &mut dst),
        Err(FrameError::TooLarge { len: 101, max: 100 })
    ));
}

#[test]
fn many_frames_in_one_buffer_both_headers() {
    for header in [LengthHeader::Binary2, LengthHeader::Ascii4] {
        let bodies: Vec<Vec<u8>> = (0..50).map(|i| vec![b'a' + (i % 26) as u8; i]).collect();
        let refs: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
        let mut buf = framed(header, &refs);
        let mut codec = FrameCodec::new(header, 4096);
        for want in &bodies {
            let got = codec.decode(&mut buf).expect("ok").expect("complete");
            assert_eq!(&got[..], &want[..], "{header}");
        }
        assert!(codec.decode(&mut buf).expect("ok").is_none());
        assert!(buf.is_empty());
    }
}

#[test]
fn split_reads_byte_by_byte() {
    for header in [LengthHeader::Binary2, LengthHeader::Ascii4] {
        let all = framed(header, &[b"first frame", b"", b"third"]);
        let mut codec = FrameCodec::new(header, 4096);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for &b in &all {
            buf.extend_from_slice(&[b]);
            while let Some(frame) = codec.decode(&mut buf).expect("ok") {
                got.push(frame);
            }
        }
        assert_eq!(
            got,
            vec![
                Bytes::from_static(b"first frame"),
                Bytes::new(),
                Bytes::from_static(b"third")
            ],
            "{header}"
        );
    }
}

#[test]
fn zero_length_frame_is_keep_alive() {
    let mut codec = FrameCodec::new(LengthHeader::Binary2, 10);
    let mut buf = BytesMut::from(&b"\x00\x00"[..]);
    let got = codec.decode(&mut buf).expect("ok").expect("frame");
    assert!(got.is_empty());
}

#[test]
fn oversize_is_rejected_before_the_body_arrives() {
    let mut codec = FrameCodec::new(LengthHeader::Binary2, 1000);
    let mut buf = BytesMut::from(&b"\xFF\xFF"[..]);
    assert!(matches!(
        codec.decode(&mut buf),
        Err(FrameError::TooLarge {
            len: 65535,
            max: 1000
        })
    ));
    let mut codec = FrameCodec::new(LengthHeader::Ascii4, 1000);
    let mut buf = BytesMut::from(&b"1001"[..]);
    assert!(matches!(
        codec.decode(&mut buf),
        Err(FrameError::TooLarge {
            len: 1001,
            max: 1000
        })
    ));
}

#[test]
fn bad_ascii_length() {
    let mut codec = FrameCodec::new(LengthHeader::Ascii4, 1000);
    let mut buf = BytesMut::from(&b"00x1abc"[..]);
    assert!(matches!(codec.decode(&mut buf), Err(FrameError::BadLength)));
    // Fewer than 4 header bytes: just incomplete, even if not digits yet.
    let mut buf = BytesMut::from(&b"00"[..]);
    assert!(codec.decode(&mut buf).expect("ok").is_none());
}

#[test]
fn io_errors_convert() {
    let e: FrameError = std::io::Error::other("boom").into();
    assert!(e.to_string().contains("boom"));
}

#[tokio::test]
async fn works_over_a_stream() {
    use futures_util::SinkExt;
    use tokio_util::codec::{FramedRead, FramedWrite};

    let (client, server) = tokio::io::duplex(64);
    let mut writer = FramedWrite::new(client, FrameCodec::new(LengthHeader::Ascii4, 4096));
    let mut reader = FramedRead::new(server, FrameCodec::new(LengthHeader::Ascii4, 4096));
    let body = Bytes::from(vec![b'z'; 300]);
    let send = {
        let body = body.clone();
        tokio::spawn(async move {
            for _ in 0..3 {
                writer.send(body.clone()).await.expect("send");
            }
        })
    };
    use futures_util::StreamExt;
    for _ in 0..3 {
        let got = reader.next().await.expect("frame").expect("ok");
        assert_eq!(got, body);
    }
    send.await.expect("join");
}
