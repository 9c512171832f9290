//! The payment webhook's signature header (`t=…,v1=…`), checked against a
//! body: never a panic, whatever the header; a header the fuzzer wrote is
//! never accepted unless it carries the genuine MAC; a genuine signature
//! always verifies inside the window.
//!
//! Input: a length byte, that many bytes of header (lossy UTF-8, as the
//! receiver only passes headers that are valid strings), the body.
#![no_main]

use boxoffice_checkout::payment::webhook::{SignatureError, sign, verify};
use libfuzzer_sys::fuzz_target;

const SECRET: &[u8] = b"whsec_fuzz";
const NOW: i64 = 1_700_000_000;
const TOLERANCE: i64 = 300;

/// Hex as the verifier reads it (pairs through `u8::from_str_radix`).
fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&length, rest)) = data.split_first() else {
        return;
    };
    let (header, body) = rest.split_at(usize::from(length).min(rest.len()));
    let header = String::from_utf8_lossy(header);

    let verdict = verify(SECRET, &header, body, NOW, TOLERANCE);
    if verdict.is_ok() {
        // Only possible if the header names a timestamp and carries, in
        // some `v1` entry, the MAC of that timestamp and this body (hex in
        // either case: the parser takes both).
        let entries: Vec<Vec<u8>> = header
            .split(',')
            .filter_map(|part| part.trim().strip_prefix("v1="))
            .filter_map(unhex)
            .collect();
        let genuine = header
            .split(',')
            .filter_map(|part| part.trim().strip_prefix("t="))
            .filter_map(|t| t.parse::<i64>().ok())
            .any(|t| {
                let mac = unhex(sign(SECRET, t, body).split_once(",v1=").unwrap().1).unwrap();
                entries.contains(&mac)
            });
        assert!(genuine, "a forged header was accepted: {header:?}");
    }

    // Whatever the body, its genuine signature verifies, within the window
    // only, and never under another secret.
    let timestamp = NOW - i64::from(length) * 3;
    let signed = sign(SECRET, timestamp, body);
    let fresh = (NOW - timestamp).abs() <= TOLERANCE;
    assert_eq!(
        verify(SECRET, &signed, body, NOW, TOLERANCE),
        if fresh {
            Ok(())
        } else {
            Err(SignatureError::Stale)
        }
    );
    assert_eq!(
        verify(b"whsec_other", &signed, body, NOW, TOLERANCE),
        Err(SignatureError::Mismatch)
    );
    // The fuzzer's header beside a genuine one (secret rotation sends
    // several `v1`): a malformed entry refuses the whole header, a
    // well-formed wrong one does not hide the genuine one.
    let both = format!("{signed},{header}");
    match verify(SECRET, &both, body, NOW, TOLERANCE) {
        Ok(()) | Err(SignatureError::Stale | SignatureError::Malformed) => {}
        Err(SignatureError::Mismatch) => {
            // Only a later `t=` in the fuzzer's part can move the timestamp.
            assert!(header.contains("t="), "{both:?}");
        }
    }
});
