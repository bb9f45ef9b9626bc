//! PIN (field 52 under a zone PIN key), CVV2 (field 48 tag 92) and ISO 8583
//! file updates (0302/1302 add and delete on the exception file), end to end
//! over TCP against the real server.

mod common;

use antaca::iso8583::Message;
use common::*;

fn pin_server(spec: &str) -> TestServer {
    TestServer::start_with(spec, |o| o.zpk = Some(test_zpk()))
}

/// A 0100 for `card` with a PIN block for `pin`.
fn with_pin(card: &str, pin: &str, stan: u32) -> Message {
    let mut m = auth(&pan(card), 100, stan);
    m.set(52, pin_block(pin, &pan(card)));
    m
}

/// A 0100 for `card` with a CVV2 in field 48 tag 92.
fn with_cvv2(card: &str, cvv2: &str, stan: u32) -> Message {
    let mut m = auth(&pan(card), 100, stan);
    m.set(48, format!("92{:02}{cvv2}", cvv2.len()));
    m
}

/// The CVK as the documentation defines it: HMAC-SHA256(data key, "antaca cvk v1"), first 16 bytes.
fn cvk_of(server: &TestServer) -> [u8; 16] {
    use hmac::{Hmac, Mac};
    let key = std::fs::read(server.dir.path().join("data.key")).expect("data key");
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).expect("hmac");
    mac.update(b"antaca cvk v1");
    let digest = mac.finalize().into_bytes();
    let mut cvk = [0u8; 16];
    cvk.copy_from_slice(&digest[..16]);
    cvk
}

#[test]
fn right_pin_approves_wrong_pin_declines_55() {
    let server = pin_server("iso87ascii");
    let mut client = server.client();
    assert_eq!(code(&client.call(&with_pin("ok", "1234", 1))), "00");
    let wrong = client.call(&with_pin("ok", "9999", 2));
    assert_eq!(code(&wrong), "55");
    assert!(wrong.get(38).is_none());
    assert_eq!(server.card("ok").pin_tries, 1);
    // Only the approval holds money.
    assert_eq!(server.balance("b-ok"), amounts("999.00", "1.00"));
}

#[test]
fn third_wrong_pin_locks_with_75_and_a_right_pin_then_still_declines() {
    let server = pin_server("iso87ascii");
    let mut client = server.client();
    assert_eq!(code(&client.call(&with_pin("ok", "1111", 1))), "55");
    assert_eq!(code(&client.call(&with_pin("ok", "2222", 2))), "55");
    assert_eq!(code(&client.call(&with_pin("ok", "3333", 3))), "75");
    let card = server.card("ok");
    assert_eq!(card.lock, Some(6));
    assert_eq!(card.pin_tries, 3);
    assert_eq!(code(&client.call(&with_pin("ok", "1234", 4))), "75");
    assert_eq!(code(&client.call(&auth(&pan("ok"), 100, 5))), "75");
    assert_eq!(server.balance("b-ok"), amounts("1000.00", "0"));
}

#[test]
fn the_lock_and_the_count_survive_a_restart() {
    let mut server = pin_server("iso87ascii");
    {
        let mut client = server.client();
        assert_eq!(code(&client.call(&with_pin("ok", "1111", 1))), "55");
        assert_eq!(code(&client.call(&with_pin("ok", "2222", 2))), "55");
    }
    // restart() starts without options: the count is on disk whatever the ZPK.
    server.restart();
    assert_eq!(server.card("ok").pin_tries, 2);
}

#[test]
fn a_right_pin_between_wrong_ones_resets_the_count() {
    let server = pin_server("iso87ascii");
    let mut client = server.client();
    assert_eq!(code(&client.call(&with_pin("ok", "1111", 1))), "55");
    assert_eq!(code(&client.call(&with_pin("ok", "2222", 2))), "55");
    assert_eq!(code(&client.call(&with_pin("ok", "1234", 3))), "00");
    assert_eq!(server.card("ok").pin_tries, 0);
    assert_eq!(code(&client.call(&with_pin("ok", "1111", 4))), "55");
    assert_eq!(code(&client.call(&with_pin("ok", "2222", 5))), "55");
    assert_eq!(server.card("ok").lock, None);
    assert_eq!(code(&client.call(&with_pin("ok", "3333", 6))), "75");
}

#[test]
fn a_garbage_pin_block_is_a_wrong_pin_and_counts() {
    let server = pin_server("iso87ascii");
    let mut client = server.client();
    let mut m = auth(&pan("ok"), 100, 1);
    m.set(52, bytes::Bytes::from_static(&[0xA5; 8]));
    assert_eq!(code(&client.call(&m)), "55");
    assert_eq!(server.card("ok").pin_tries, 1);
    // A block made for another PAN does not decrypt to this card's PIN either.
    let mut m = auth(&pan("ok"), 100, 2);
    m.set(52, pin_block("1234", "4111111111111111"));
    assert_eq!(code(&client.call(&m)), "55");
    assert_eq!(server.card("ok").pin_tries, 2);
}

#[test]
fn pin_checks_come_after_lock_and_expiry_and_do_not_count_there() {
    let server = pin_server("iso87ascii");
    let mut client = server.client();
    let mut m = with_pin("ok", "1111", 1);
    m.set(14, "4911".to_string());
    assert_eq!(code(&client.call(&m)), "54", "expiry mismatch first");
    assert_eq!(server.card("ok").pin_tries, 0);
    assert_eq!(code(&client.call(&with_pin("lock7", "1111", 2))), "59");
    // A wrong PIN with too little money: the PIN answers first.
    let mut big = with_pin("ok", "1111", 3);
    big.set(4, "000099999999".to_string());
    assert_eq!(code(&client.call(&big)), "55");
    let mut big = with_pin("ok", "1234", 4);
    big.set(4, "000099999999".to_string());
    assert_eq!(code(&client.call(&big)), "51");
}

#[test]
fn without_a_zone_pin_key_a_pin_block_is_unverifiable_96() {
    let server = TestServer::start("iso87ascii");
    let mut client = server.client();
    assert_eq!(code(&client.call(&with_pin("ok", "1234", 1))), "96");
    assert_eq!(server.card("ok").pin_tries, 0, "not the cardholder's fault");
    assert_eq!(code(&client.call(&auth(&pan("ok"), 100, 2))), "00");
}

#[test]
fn cvv2_right_approves_wrong_declines_n7() {
    let server = pin_server("iso87ascii");
    let mut client = server.client();
    assert_eq!(code(&client.call(&with_cvv2("ok", "123", 1))), "00");
    assert_eq!(code(&client.call(&with_cvv2("ok", "124", 2))), "N7");
    assert_eq!(code(&client.call(&with_cvv2("ok", "1234", 3))), "N7");
    // Malformed subelements: format error on field 48.
    let mut m = auth(&pan("ok"), 100, 4);
    m.set(48, "92051".to_string());
    assert_eq!(code(&client.call(&m)), "30");
    // A wrong CVV2 comes before a wrong PIN; a wrong CVV2 does not count a PIN try.
    let mut m = with_cvv2("ok", "999", 5);
    m.set(52, pin_block("1111", &pan("ok")));
    assert_eq!(code(&client.call(&m)), "N7");
    assert_eq!(server.card("ok").pin_tries, 0);
    // A card with no CVV2 at all never matches.
    assert_eq!(code(&client.call(&with_cvv2("poor", "123", 6))), "N7");
}

#[test]
fn derived_cvv2_follows_the_card_generation() {
    let server = pin_server("iso87ascii");
    let cvk = cvk_of(&server);
    let ok_pan = pan("ok");
    let expiry = server.card("ok").expiry;
    server.change_card("ok", |card| card.cvv_generation = Some(5));
    let derived = antaca::security::cvv::derive_cvv2(&cvk, ok_pan.as_bytes(), &expiry, 5);
    let mut client = server.client();
    assert_eq!(code(&client.call(&with_cvv2("ok", &derived, 1))), "00");
    let wrong = format!(
        "{:03}",
        (derived.parse::<u32>().expect("digits") + 1) % 1000
    );
    assert_eq!(code(&client.call(&with_cvv2("ok", &wrong, 2))), "N7");
    if derived != "123" {
        assert_eq!(
            code(&client.call(&with_cvv2("ok", "123", 3))),
            "N7",
            "the imported CVV2 no longer counts"
        );
    }
    // A CVV reset (new generation) changes what verifies.
    server.change_card("ok", |card| card.cvv_generation = Some(6));
    let next = antaca::security::cvv::derive_cvv2(&cvk, ok_pan.as_bytes(), &expiry, 6);
    assert_eq!(code(&client.call(&with_cvv2("ok", &next, 4))), "00");
    if next != derived {
        assert_eq!(code(&client.call(&with_cvv2("ok", &derived, 5))), "N7");
    }
}

#[test]
fn iso93_pin_and_cvv2_codes() {
    let server = pin_server("iso93");
    let mut client = server.client();
    let mut stan = 0;
    let mut call = |extra: &dyn Fn(&mut Message)| {
        stan += 1;
        let mut r = request("1100", &pan("ok"), "000000", 100, stan);
        r.set(12, format!("26{}", transmission_now()));
        extra(&mut r);
        code(&client.call(&r))
    };
    assert_eq!(call(&|r| r.set(52, pin_block("1234", &pan("ok")))), "0000");
    assert_eq!(call(&|r| r.set(52, pin_block("1111", &pan("ok")))), "1017");
    assert_eq!(call(&|r| r.set(48, "9203124".to_string())), "1022");
    assert_eq!(call(&|r| r.set(52, pin_block("2222", &pan("ok")))), "1017");
    assert_eq!(call(&|r| r.set(52, pin_block("3333", &pan("ok")))), "1006");
}

#[test]
fn file_update_add_locks_and_delete_unlocks() {
    let server = pin_server("iso87ascii");
    let mut client = server.client();
    let add = file_update("0302", &pan("ok"), "1", Some(7), 1);
    let response = client.call(&add);
    assert_eq!(response.mti(), *b"0312");
    assert_eq!(code(&response), "00");
    for n in [2, 7, 11, 91, 101] {
        assert_eq!(response.get(n), add.get(n), "field {n} echoed");
    }
    assert_eq!(server.card("ok").lock, Some(7));
    assert_eq!(code(&client.call(&auth(&pan("ok"), 100, 2))), "59");
    // A repeat of the add is answered the same and changes nothing.
    assert_eq!(code(&client.call(&add)), "00");
    let delete = file_update("0302", &pan("ok"), "3", None, 3);
    assert_eq!(code(&client.call(&delete)), "00");
    assert_eq!(server.card("ok").lock, None);
    assert_eq!(code(&client.call(&auth(&pan("ok"), 100, 4))), "00");
    // The same key with another action is not a repeat.
    let mut other = file_update("0302", &pan("ok"), "1", Some(3), 3);
    other.set(7, field(&delete, 7));
    assert_eq!(code(&client.call(&other)), "94");
    // Delete of a card that is not locked: nothing to do.
    assert_eq!(
        code(&client.call(&file_update("0302", &pan("ok"), "3", None, 5))),
        "00"
    );
}

#[test]
fn file_update_refuses_irreversible_locks_and_unknown_cards() {
    let server = pin_server("iso87ascii");
    let mut client = server.client();
    let delete = client.call(&file_update("0302", &pan("lock1"), "3", None, 1));
    assert_eq!(code(&delete), "29");
    assert_eq!(server.card("lock1").lock, Some(1));
    assert_eq!(
        code(&client.call(&file_update("0302", &pan("lock1"), "1", Some(7), 2))),
        "29",
        "an irreversible lock is not replaced"
    );
    assert_eq!(
        code(&client.call(&file_update("0302", &pan("lock1"), "1", Some(1), 3))),
        "00",
        "already on file with that reason"
    );
    // A reversible lock may become irreversible.
    assert_eq!(
        code(&client.call(&file_update("0302", &pan("lock7"), "1", Some(2), 4))),
        "00"
    );
    assert_eq!(server.card("lock7").lock, Some(2));
    assert_eq!(
        code(&client.call(&file_update("0302", "5355229999999990", "1", Some(7), 5))),
        "14"
    );
    assert_eq!(
        code(&client.call(&file_update("0302", &pan("ok"), "5", None, 6))),
        "24",
        "inquiry is not supported"
    );
    // Bad reasons are format errors on field 48.
    assert_eq!(
        code(&client.call(&file_update("0302", &pan("ok"), "1", Some(9), 7))),
        "30"
    );
    assert_eq!(
        code(&client.call(&file_update("0302", &pan("ok"), "1", None, 8))),
        "30"
    );
}

#[test]
fn deleting_a_pin_tries_lock_gives_fresh_tries() {
    let server = pin_server("iso87ascii");
    let mut client = server.client();
    for (stan, pin) in [(1, "1111"), (2, "2222"), (3, "3333")] {
        client.call(&with_pin("ok", pin, stan));
    }
    assert_eq!(server.card("ok").lock, Some(6));
    assert_eq!(
        code(&client.call(&file_update("0302", &pan("ok"), "3", None, 4))),
        "00"
    );
    assert_eq!(server.card("ok").pin_tries, 0);
    assert_eq!(code(&client.call(&with_pin("ok", "1111", 5))), "55");
    assert_eq!(code(&client.call(&with_pin("ok", "1234", 6))), "00");
}

#[test]
fn iso93_file_update_1302() {
    let server = pin_server("iso93");
    let mut client = server.client();
    let mut stan = 100;
    let mut auth93 = |client: &mut Client| {
        stan += 1;
        let mut r = request("1100", &pan("ok"), "000000", 100, stan);
        r.set(12, format!("26{}", transmission_now()));
        code(&client.call(&r))
    };
    let add = client.call(&file_update("1302", &pan("ok"), "1", Some(7), 1));
    assert_eq!(add.mti(), *b"1312");
    assert_eq!(code(&add), "3000");
    assert_eq!(auth93(&mut client), "1002");
    assert_eq!(
        code(&client.call(&file_update("1302", &pan("ok"), "3", None, 2))),
        "3000"
    );
    assert_eq!(auth93(&mut client), "0000");
    assert_eq!(
        code(&client.call(&file_update("1302", &pan("lock2"), "3", None, 3))),
        "3006"
    );
    assert_eq!(
        code(&client.call(&file_update("1302", "5355229999999990", "3", None, 4))),
        "1011"
    );
}
