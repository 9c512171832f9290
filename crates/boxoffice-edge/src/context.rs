//! What the edge passes along with every call: a request id (kept when the
//! client sent a sane one) and W3C trace context (the edge's own span as
//! the parent of the upstream's), plus `grpc-timeout` parsing and writing.

use std::time::Duration;

use http::HeaderValue;
use rand::RngCore as _;

pub(crate) const REQUEST_ID: &str = "x-request-id";
pub(crate) const TRACEPARENT: &str = "traceparent";
pub(crate) const GRPC_TIMEOUT: &str = "grpc-timeout";

/// The client's request id when it is short and plain, else a new one.
pub(crate) fn request_id(sent: Option<&HeaderValue>) -> HeaderValue {
    if let Some(value) = sent {
        let bytes = value.as_bytes();
        if !bytes.is_empty()
            && bytes.len() <= 128
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return value.clone();
        }
    }
    // A v4 UUID from the thread-local generator: no system call per
    // request, and written without an intermediate string.
    let mut random = [0u8; 16];
    rand::rng().fill_bytes(&mut random);
    let id = uuid::Builder::from_random_bytes(random).into_uuid();
    let mut text = uuid::Uuid::encode_buffer();
    let text = id.simple().encode_lower(&mut text);
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn write_hex(out: &mut [u8], bytes: &[u8]) {
    for (pair, byte) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX[usize::from(byte >> 4)];
        pair[1] = HEX[usize::from(byte & 0x0f)];
    }
}

fn is_lower_hex(text: &[u8], len: usize) -> bool {
    text.len() == len
        && text
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
}

/// `00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`.
const TRACEPARENT_LEN: usize = 55;

/// The `traceparent` to send upstream: the caller's trace with a new span
/// id for this hop, or a new sampled trace when the caller sent none (or a
/// malformed one).
pub(crate) fn traceparent(sent: Option<&HeaderValue>) -> HeaderValue {
    let mut rng = rand::rng();
    let mut out = *b"00-00000000000000000000000000000000-0000000000000000-01";
    let parsed = sent.and_then(|value| {
        let text = value.as_bytes().trim_ascii();
        let mut parts = text.split(|b| *b == b'-');
        let (version, trace, _parent, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let valid = is_lower_hex(version, 2)
            && version != b"ff"
            && is_lower_hex(trace, 32)
            && trace.iter().any(|b| *b != b'0')
            && is_lower_hex(flags, 2);
        valid.then_some((trace, flags))
    });
    match parsed {
        Some((trace, flags)) => {
            out[3..35].copy_from_slice(trace);
            out[53..55].copy_from_slice(flags);
        }
        None => {
            let mut trace = [0u8; 16];
            rng.fill_bytes(&mut trace);
            write_hex(&mut out[3..35], &trace);
        }
    }
    let mut span = [0u8; 8];
    rng.fill_bytes(&mut span);
    write_hex(&mut out[36..52], &span);
    debug_assert_eq!(out.len(), TRACEPARENT_LEN);
    HeaderValue::from_bytes(&out).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// Parses `grpc-timeout` (`<up to 8 digits><H|M|S|m|u|n>`).
pub(crate) fn parse_grpc_timeout(value: &HeaderValue) -> Option<Duration> {
    let text = value.to_str().ok()?;
    if text.len() < 2 || text.len() > 9 {
        return None;
    }
    let (digits, unit) = text.split_at(text.len() - 1);
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount.saturating_mul(3600)),
        "M" => Duration::from_secs(amount.saturating_mul(60)),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// Writes the timeout to send upstream. Under a second, in microseconds;
/// from a second up, in whole milliseconds, rounded down (so the upstream's
/// budget is never longer than the edge's, and at most 1 ms shorter): calls
/// made around the same time then send the same value, which HPACK encodes
/// as a one-byte index into its table instead of a fresh literal per call.
pub(crate) fn format_grpc_timeout(timeout: Duration) -> HeaderValue {
    let (amount, unit) = if timeout < Duration::from_secs(1) {
        // Under 1,000,000: fits in 8 digits.
        (timeout.subsec_micros().max(1), b'u')
    } else if timeout.as_millis() < 100_000_000 {
        (timeout.as_millis() as u32, b'm')
    } else {
        (timeout.as_secs().min(99_999_999) as u32, b'S')
    };
    // At most 8 digits and the unit, on the stack.
    let mut text = [0u8; 9];
    let mut digits = 0;
    let mut rest = amount;
    loop {
        digits += 1;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    let mut rest = amount;
    for slot in text[..digits].iter_mut().rev() {
        *slot = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    text[digits] = unit;
    HeaderValue::from_bytes(&text[..=digits]).unwrap_or_else(|_| HeaderValue::from_static("1S"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_round_trip() {
        for (text, expected) in [
            ("1S", Duration::from_secs(1)),
            ("250m", Duration::from_millis(250)),
            ("5u", Duration::from_micros(5)),
            ("2M", Duration::from_secs(120)),
            ("1H", Duration::from_secs(3600)),
        ] {
            assert_eq!(
                parse_grpc_timeout(&HeaderValue::from_static(text)),
                Some(expected)
            );
        }
        assert_eq!(
            parse_grpc_timeout(&HeaderValue::from_static("123456789S")),
            None
        );
        assert_eq!(parse_grpc_timeout(&HeaderValue::from_static("10x")), None);
        let written = format_grpc_timeout(Duration::from_millis(1500));
        assert_eq!(
            parse_grpc_timeout(&written),
            Some(Duration::from_millis(1500))
        );
        let long = format_grpc_timeout(Duration::from_secs(3600 * 24));
        assert_eq!(
            parse_grpc_timeout(&long),
            Some(Duration::from_secs(3600 * 24))
        );
        let longest = format_grpc_timeout(Duration::from_secs(u64::MAX));
        assert_eq!(longest, "99999999S");
    }

    #[test]
    fn timeouts_are_written_finely_below_a_second_and_never_longer() {
        for (timeout, text) in [
            (Duration::ZERO, "1u"),
            (Duration::from_nanos(1500), "1u"),
            (Duration::from_micros(999_999), "999999u"),
            (Duration::from_secs(1), "1000m"),
            // The default deadline, a few microseconds after the call
            // arrived: the same text for every call in that millisecond.
            (Duration::from_secs(10) - Duration::from_micros(37), "9999m"),
            (
                Duration::from_secs(10) - Duration::from_micros(940),
                "9999m",
            ),
            (Duration::from_secs(99_999), "99999000m"),
            (Duration::from_secs(100_000), "100000S"),
        ] {
            assert_eq!(format_grpc_timeout(timeout), text, "{timeout:?}");
            assert!(
                parse_grpc_timeout(&format_grpc_timeout(timeout)).unwrap()
                    <= timeout.max(Duration::from_micros(1))
            );
        }
    }

    #[test]
    fn trace_context_keeps_the_trace_and_makes_a_new_span() {
        let sent =
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        let next = traceparent(Some(&sent));
        let next = next.to_str().unwrap();
        assert!(next.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(!next.contains("00f067aa0ba902b7"));
        assert!(next.ends_with("-01"));
        let fresh = traceparent(Some(&HeaderValue::from_static("garbage")));
        assert_eq!(fresh.to_str().unwrap().len(), 55);
    }

    #[test]
    fn request_ids_are_kept_only_when_plain() {
        let sent = HeaderValue::from_static("abc-123");
        assert_eq!(request_id(Some(&sent)), sent);
        let odd = HeaderValue::from_static("has spaces");
        assert_ne!(request_id(Some(&odd)), odd);
    }
}
