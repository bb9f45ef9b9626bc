//! Codec throughput: decode, encode and decode+encode of a typical 0100
//! request and its 0110 response, for iso87ascii and iso87binary.
// criterion's `criterion_group!` makes public functions without docs.
#![allow(missing_docs)]

use antaca::iso8583::{Message, Spec};
use bytes::{Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

fn request() -> Message {
    let mut m = Message::new(*b"0100");
    for (n, v) in [
        (2, &b"5355220000000012"[..]),
        (3, b"000000"),
        (4, b"000000012550"),
        (7, b"0315103000"),
        (11, b"000123"),
        (12, b"103000"),
        (13, b"0315"),
        (14, b"2812"),
        (18, b"5411"),
        (22, b"051"),
        (25, b"00"),
        (32, b"12345"),
        (35, b"5355220000000012=28121011234567"),
        (37, b"507410000123"),
        (41, b"TERM0001"),
        (42, b"ANTACAMERCH0001"),
        (43, b"ANTACA TEST MERCHANT     LISBON       PT"),
        (49, b"978"),
    ] {
        m.set(n, v);
    }
    m.set(52, &[0x01u8, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF][..]);
    m
}

fn response(req: &Message) -> Message {
    let mut m = Message::new(*b"0110");
    for n in [2, 3, 4, 7, 11, 12, 13, 18, 22, 25, 32, 37, 41, 42, 49] {
        if let Some(v) = req.get_bytes(n) {
            m.set(n, v.clone());
        }
    }
    m.set(38, &b"A1B2C3"[..]);
    m.set(39, &b"00"[..]);
    m
}

fn encode(spec: &Spec, m: &Message) -> Bytes {
    let mut out = BytesMut::new();
    spec.encode(m, &mut out).expect("bench message encodes");
    out.freeze()
}

fn bench(c: &mut Criterion) {
    for name in ["iso87ascii", "iso87binary"] {
        let spec = Spec::builtin(name).expect("built-in");
        let req = request();
        let resp = response(&req);
        let req_wire = encode(&spec, &req);
        let resp_wire = encode(&spec, &resp);
        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Elements(1));
        for (label, msg, wire) in [("0100", &req, &req_wire), ("0110", &resp, &resp_wire)] {
            g.bench_function(format!("decode_{label}"), |b| {
                b.iter(|| spec.decode(black_box(wire)).expect("decodes"));
            });
            let mut out = BytesMut::with_capacity(1024);
            g.bench_function(format!("encode_{label}"), |b| {
                b.iter(|| {
                    out.clear();
                    spec.encode(black_box(msg), &mut out).expect("encodes");
                });
            });
        }
        // One "pair": decode the request, encode it back out, decode the response,
        // encode it (what a switch does per authorization), with fresh buffers.
        g.bench_function("pair_decode_encode_0100_0110", |b| {
            b.iter(|| {
                let a = spec.decode(black_box(&req_wire)).expect("decodes");
                let mut o = BytesMut::new();
                spec.encode(&a, &mut o).expect("encodes");
                let r = spec.decode(black_box(&resp_wire)).expect("decodes");
                let mut o2 = BytesMut::new();
                spec.encode(&r, &mut o2).expect("encodes");
                (o, o2)
            });
        });
        // What the issuer does per authorization: decode the 0100, encode the 0110.
        g.bench_function("server_decode_0100_encode_0110", |b| {
            b.iter(|| {
                let a = spec.decode(black_box(&req_wire)).expect("decodes");
                let mut o = BytesMut::new();
                spec.encode(black_box(&resp), &mut o).expect("encodes");
                (a, o)
            });
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
