#!/usr/bin/env python3
"""Writes the committed seed corpus of every fuzz target to fuzz/corpus/<target>/seed-*.

Run from the repository root: python3 fuzz/make_seeds.py
Sources: the golden ISO 8583 vectors (fixtures/golden/**.json, hex decoded to
raw frames), fixtures/*.json, and a few handcrafted inputs. Deterministic.
"""
import glob
import hashlib
import json
import os
import shutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")
TARGETS = ["iso8583_decode", "framing", "protocol_parse", "portfolio", "http_json"]


def field93(fields):
    """A small iso93 (ASCII, hex bitmap) frame; fields = {n: bytes}, n < 65."""
    bitmap = 0
    for n in fields:
        bitmap |= 1 << (64 - n)
    out = b"1100" + ("%016X" % bitmap).encode()
    for n in sorted(fields):
        out += fields[n]
    return out


def main():
    seeds = {t: [] for t in TARGETS}
    frames = {}
    for path in sorted(glob.glob(os.path.join(ROOT, "fixtures", "golden", "**", "*.json"), recursive=True)):
        with open(path) as f:
            vec = json.load(f)
        frames.setdefault(vec["spec"], []).append(bytes.fromhex(vec["hex"]))
    all_frames = [fr for spec in sorted(frames) for fr in frames[spec]]
    seeds["iso8583_decode"] += all_frames
    seeds["protocol_parse"] += frames["iso87ascii"]
    iso93 = field93({
        2: b"16" + b"5355220000000012",
        3: b"000000",
        4: b"000000012550",
        11: b"000123",
        12: b"250315103000",
        41: b"TERM0001",
        49: b"978",
    })
    seeds["iso8583_decode"].append(iso93)
    seeds["protocol_parse"].append(iso93)
    # framing: control byte (bit 0: 0 = binary2, 1 = ascii4; bits 1-2: limit), chunk sizes, stream.
    for i, fr in enumerate(frames["iso87ascii"][:6] + frames["iso87binary"][:4]):
        two = len(fr).to_bytes(2, "big") + fr
        four = b"%04d" % len(fr) + fr
        seeds["framing"].append(bytes([0b110, 3, 1, 7, 0]) + two + two[: len(two) // 2])
        seeds["framing"].append(bytes([0b111, 2, 5, 64]) + four + four + four[:3])
    seeds["framing"] += [bytes([1, 0]) + b"00X5abc", bytes([0, 1, 1]) + b"\xff\xff", bytes([7, 0]) + b"9999"]
    # portfolio: the fixtures and small handcrafted ones.
    for path in sorted(glob.glob(os.path.join(ROOT, "fixtures", "*.json"))):
        with open(path, "rb") as f:
            seeds["portfolio"].append(f.read())
    seeds["portfolio"] += [
        b"{}",
        b'{"programs":[],"partner_balances":[],"users":[],"balances":[],"cards":[]}',
        b'{"programs":[{"id":"p","bin":"535522","currency":"EUR","funding":"user_balance"}],'
        b'"users":[{"id":"u","program":"p","kyc":"verified"}]}',
    ]
    # http_json: control byte (% 4: 0 Value, 1 NewCustomer, 2 NewPartnerBalance, 3 JWE), then input.
    bodies = [
        b'{"id":"c1","email":"a@example.com","phone":"+351900000000","firstName":"Ana","lastName":"Silva"}',
        b'{"program":"credit","kind":"credit","currency":"EUR","lowLevel":"10.00"}',
        b'{"program":"deposit","kind":"deposit","currency":"EUR","id":"pd2"}',
        b'[1, -2.5e300, "\\u00e9\\ud83d\\ude00", {"a": null, "b": [true, false]}]',
        b'{"unknown": 1}',
    ]
    for which in range(3):
        for ct in range(6):
            for body in bodies:
                if ct in (0, 1) or body is bodies[which]:
                    seeds["http_json"].append(bytes([which + 4 * ct]) + body)
    with open(os.path.join(ROOT, "fuzz", "seed-public-key.b64"), "rb") as f:
        key = f.read().strip()
    # A structurally valid compact JWE (alg/enc allowed, 12-byte IV, 16-byte tag) that no key opens.
    import base64

    def b64u(b):
        return base64.urlsafe_b64encode(b).rstrip(b"=")

    jwe = b".".join([
        b64u(b'{"alg":"RSA-OAEP-256","enc":"A256GCM"}'),
        b64u(bytes(range(256))),
        b64u(bytes(12)),
        b64u(b"ciphertext"),
        b64u(bytes(16)),
    ])
    body = b'{"payload":"' + jwe + b'"}'
    for policy in range(3):
        control = bytes([3 + 4 * policy])
        seeds["http_json"] += [
            control + b"encrypted-request: true\npublic-key: " + key + b"\0" + body,
            control + b"Encrypted-Request: TRUE\nPublic-Key: " + key + b"\0",
            control + b"encrypted-request: false\0" + bodies[0],
            control + b"encrypted-request: maybe\nencrypted-request: true\0 ",
            control + b"encrypted-request: true\npublic-key: " + key[:40] + b"\0{}",
        ]
    for target, items in seeds.items():
        d = os.path.join(CORPUS, target)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        for data in items:
            name = "seed-" + hashlib.sha1(data).hexdigest()[:16]
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)
        print(target, len(os.listdir(d)))


if __name__ == "__main__":
    main()
