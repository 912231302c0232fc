//! Idempotency: a retried request, or a re-sent event id, returns the original result and
//! publishes nothing new.
//!
//! Two kinds of key, both claimed in the database before anything is published (a unique
//! `(scope, key)` row), so that concurrent duplicates cannot both publish:
//! - an **event id** (`id` of an event, scope `event`): the result of that one event;
//! - an **`Idempotency-Key`** header (scope `request:<client>`): the whole answer. Events of such
//!   a request that carry no `id` get one derived from the key and their position, so a retry
//!   after a partial failure re-publishes only what was not acknowledged, under the same ids.
//!
//! A key is remembered for the idempotency window; a claim whose request never finished (the
//! process died) is taken over after [`IdempotencyStore::stale_after`].

mod store;

use serde_json::Value as Json;
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub use store::{migrations, now_ms, Claim, Completion, IdempotencyStore, StoreError};

/// The scope of event ids: global, like the ids themselves.
pub const EVENT_SCOPE: &str = "event";
/// The scope of `Idempotency-Key`s of callers without an identity (auth switched off).
pub const ANONYMOUS: &str = "anonymous";
pub const MAX_KEY_LENGTH: usize = 255;

/// The scope of a client's `Idempotency-Key`s: keys are the client's own names.
pub fn request_scope(client: &str) -> String {
    format!("request:{client}")
}

/// A validated `Idempotency-Key` header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the Idempotency-Key header must be 1 to {MAX_KEY_LENGTH} visible ASCII characters")]
pub struct InvalidKey;

impl IdempotencyKey {
    pub fn parse(text: &str) -> Result<Self, InvalidKey> {
        let valid = !text.is_empty() && text.len() <= MAX_KEY_LENGTH && text.bytes().all(|b| b.is_ascii_graphic());
        valid.then(|| Self(text.to_owned())).ok_or(InvalidKey)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The id given to event `index` of a request sent with `key` by the client `scope` when the
/// event has none: the same on every retry, different for every other request.
pub fn derived_event_id(scope: &str, key: &IdempotencyKey, index: usize) -> Uuid {
    const NAMESPACE: Uuid = Uuid::from_u128(0x5f0c_9a4e_2b7d_4c31_9e6a_0d8b_7c1f_3a25);
    Uuid::new_v5(&NAMESPACE, format!("{scope}\n{}\n{index}", key.as_str()).as_bytes())
}

/// The fingerprint of an event: SHA-256 of its canonical JSON (object keys sorted), so the same
/// event sent with its attributes in another order is still the same event.
pub fn event_fingerprint(event: &Json) -> String {
    let mut text = String::new();
    canonical(event, &mut text);
    hex(&Sha256::digest(text.as_bytes()))
}

/// The fingerprint of a request: route, body kind and the exact body bytes.
pub fn request_fingerprint(route: &str, kind: &str, body: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(route.as_bytes());
    hasher.update([0]);
    hasher.update(kind.as_bytes());
    hasher.update([0]);
    hasher.update(body);
    hex(&hasher.finalize())
}

fn canonical(json: &Json, out: &mut String) {
    match json {
        Json::Object(map) => {
            let mut entries: Vec<(&String, &Json)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Json::String(key.clone()).to_string());
                out.push(':');
                canonical(value, out);
            }
            out.push('}');
        }
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fingerprints_ignore_key_order_but_not_values() {
        let a = json!({"type": "T", "data": {"x": 1, "y": [1, 2]}});
        let b: Json = serde_json::from_str(r#"{"data": {"y": [1, 2], "x": 1}, "type": "T"}"#).unwrap();
        assert_eq!(event_fingerprint(&a), event_fingerprint(&b));
        assert_ne!(event_fingerprint(&a), event_fingerprint(&json!({"type": "T", "data": {"x": 2, "y": [1, 2]}})));
        assert_ne!(event_fingerprint(&a), event_fingerprint(&json!({"type": "T", "data": {"x": 1, "y": [2, 1]}})));
        assert_eq!(event_fingerprint(&a).len(), 64);
    }

    #[test]
    fn request_fingerprints_cover_route_kind_and_body() {
        let base = request_fingerprint("/v1/events", "json", b"{}");
        assert_eq!(base, request_fingerprint("/v1/events", "json", b"{}"));
        assert_ne!(base, request_fingerprint("/v1/events:batch", "json", b"{}"));
        assert_ne!(base, request_fingerprint("/v1/events", "ndjson", b"{}"));
        assert_ne!(base, request_fingerprint("/v1/events", "json", b"{ }"));
    }

    #[test]
    fn keys_are_short_visible_ascii() {
        assert!(IdempotencyKey::parse("order-42/retry:1").is_ok());
        for bad in ["", "with space", "tab\t", "é", &"k".repeat(256)] {
            assert_eq!(IdempotencyKey::parse(bad), Err(InvalidKey), "{bad:?}");
        }
    }

    #[test]
    fn derived_ids_are_stable_per_key_and_position() {
        let key = IdempotencyKey::parse("k1").unwrap();
        let other = IdempotencyKey::parse("k2").unwrap();
        let id = derived_event_id("request:a", &key, 0);
        assert_eq!(id, derived_event_id("request:a", &key, 0));
        assert_ne!(id, derived_event_id("request:a", &key, 1));
        assert_ne!(id, derived_event_id("request:b", &key, 0));
        assert_ne!(id, derived_event_id("request:a", &other, 0));
    }
}
