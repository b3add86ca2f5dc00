//! GraphQL node ids: base64 of `Type:number`, the shape W&B uses (e.g. `QXJ0aWZhY3Q6MQ==` is
//! `Artifact:1`). Clients treat them as opaque strings.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

pub fn encode(kind: &str, id: i64) -> String {
    STANDARD.encode(format!("{kind}:{id}"))
}

/// An id for things without a number of their own (e.g. a file inside an artifact version).
pub fn encode_str(kind: &str, key: &str) -> String {
    STANDARD.encode(format!("{kind}:{key}"))
}

/// The number inside an id of the given kind; `None` for anything else.
pub fn decode(kind: &str, id: &str) -> Option<i64> {
    let bytes = STANDARD.decode(id.trim()).ok()?;
    let text = std::str::from_utf8(&bytes).ok()?;
    let (k, n) = text.split_once(':')?;
    (k == kind).then(|| n.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_check_their_kind() {
        assert_eq!(encode("Artifact", 1), "QXJ0aWZhY3Q6MQ==");
        assert_eq!(decode("Artifact", &encode("Artifact", 42)), Some(42));
        assert_eq!(decode("Run", &encode("Artifact", 42)), None);
        assert_eq!(decode("Run", "not base64!"), None);
        assert_eq!(decode("Run", &STANDARD.encode("Run:x")), None);
    }
}
