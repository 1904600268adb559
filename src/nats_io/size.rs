//! What the server counts against its `max_payload`: a publish's header block and body
//! together. A publish over it is refused with `-ERR 'Maximum Payload Violation'` and
//! the connection closed, which disturbs every tenant on it; so sizes are compared
//! before sending (and before committing what would be sent), never found out by trying.

use nats::header::HeaderMap;

/// The `max_payload` the server does not state: NATS's own default (1 MiB).
pub const DEFAULT_MAX_PAYLOAD: usize = 1024 * 1024;

/// The connection's `max_payload` (from the server's INFO), or `fallback` when the
/// server stated none.
pub fn max_payload(nc: &nats::Connection, fallback: usize) -> usize {
    match nc.max_payload() {
        0 => fallback,
        n => n,
    }
}

/// Bytes the server counts for a publish of `body` with `headers` (and a `Nats-Msg-Id`
/// of `msg_id_len` bytes when the publisher adds one): `NATS/1.0\r\n`, one
/// `name: value\r\n` line per value, a blank line, then the body. Rounded up a little
/// (a space after each colon), so the estimate is never below what the client sends.
pub fn wire_size(headers: &HeaderMap, msg_id_len: Option<usize>, body: usize) -> usize {
    let lines: usize = headers
        .iter()
        .map(|(name, values)| {
            values
                .iter()
                .map(|v| name.len() + v.len() + 4)
                .sum::<usize>()
        })
        .sum();
    let msg_id = msg_id_len.map_or(0, |n| crate::envelope::header::MSG_ID.len() + n + 4);
    "NATS/1.0\r\n".len() + lines + msg_id + 2 + body
}

/// The length of `value`'s compact JSON (what `serde_json::to_vec` would return),
/// counted without keeping the bytes: for size checks of what is published later.
/// `None` when it cannot be written (a map with non-string keys).
pub fn json_len<T: serde::Serialize + ?Sized>(value: &T) -> Option<usize> {
    let mut counted = Counted(0);
    serde_json::to_writer(&mut counted, value).ok()?;
    Some(counted.0)
}

/// A writer that only counts what it is given.
struct Counted(usize);

impl std::io::Write for Counted {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Whether the server's error text says the publish was over its `max_payload`.
pub fn is_too_large_error(text: &str) -> bool {
    let text = text.to_ascii_lowercase();
    // The server's `-ERR` on the connection, and JetStream's refusal of a message over
    // a stream's `max_msg_size`.
    [
        "maximum payload",
        "max_payload",
        "payload too large",
        "message size exceeds maximum",
    ]
    .iter()
    .any(|needle| text.contains(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_is_never_below_what_the_client_writes() {
        let mut h = HeaderMap::new();
        h.insert("x-tenant-id", "acme");
        h.insert("x-correlation-id", "o-1");
        // What nats 0.25 writes: version line, `name:value\r\n` per value, blank line.
        let exact = "NATS/1.0\r\n".len()
            + "x-tenant-id:acme\r\n".len()
            + "x-correlation-id:o-1\r\n".len()
            + "Nats-Msg-Id:id-1\r\n".len()
            + 2
            + 100;
        let estimate = wire_size(&h, Some(4), 100);
        assert!(
            estimate >= exact && estimate <= exact + 8,
            "{estimate} vs {exact}"
        );
        assert_eq!(wire_size(&HeaderMap::new(), None, 7), 12 + 7);
    }

    #[test]
    fn json_len_is_the_length_of_the_compact_json() {
        let v = serde_json::json!({"a": "t\u{e9}xt \"q\"\n", "n": [1, 2.5, null], "e": {}});
        assert_eq!(json_len(&v), Some(serde_json::to_vec(&v).unwrap().len()));
        let odd: std::collections::HashMap<(u8, u8), u8> = [((1, 2), 3)].into();
        assert_eq!(json_len(&odd), None);
    }

    #[test]
    fn the_servers_too_large_errors_are_recognised() {
        assert!(is_too_large_error("maximum payload exceeded"));
        assert!(is_too_large_error("-ERR 'Maximum Payload Violation'"));
        assert!(!is_too_large_error("stream not found"));
    }
}
