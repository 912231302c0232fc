//! The pure parts of parking: heads, key blocks and rows.

use super::*;

fn head(offset: i64, state: ParkedState, next_try_at_ms: i64) -> Head {
    Head { offset, state, next_try_at_ms, event_id: format!("e-{offset}") }
}

#[test]
fn a_head_is_due_when_it_waits_for_nothing_and_the_partition_is_past_it() {
    assert!(head(3, ParkedState::Parked, 0).is_due(0, 4));
    assert!(!head(3, ParkedState::Parked, 0).is_due(0, 3), "the saved offset must be past the row");
    assert!(head(3, ParkedState::Retry, 100).is_due(100, 10));
    assert!(!head(3, ParkedState::Retry, 100).is_due(99, 10), "not before its retry time");
    assert!(!head(3, ParkedState::Dead, 0).is_due(i64::MAX, 10), "a dead head waits for its redrive");
}

#[test]
fn blocks_track_heads_and_the_gauge() {
    let gauge = IntGauge::new("parked", "parked").unwrap();
    let mut blocks = KeyBlocks::new(gauge.clone());
    blocks.block("k1", head(5, ParkedState::Retry, 50), DeadLetterReason::RetriesExhausted, "x");
    blocks.add_parked(2);
    assert!(blocks.is_blocked("k1") && !blocks.is_blocked("k2"));
    assert!(!blocks.waits_for_redrive("k1"));
    blocks.block("k1", head(4, ParkedState::Dead, 0), DeadLetterReason::Permanent, "y");
    assert!(blocks.waits_for_redrive("k1"));
    assert_eq!(gauge.get(), 4);
    assert_eq!(blocks.due(49, 100), Vec::<String>::new(), "the earlier dead event is the head now");
    assert_eq!(blocks.next_retry_ms(), None);

    let mut heads = BTreeMap::new();
    heads.insert("k1".to_owned(), head(6, ParkedState::Parked, 0));
    heads.insert("k3".to_owned(), head(9, ParkedState::Retry, 10));
    blocks.replace(heads, 3, false);
    assert_eq!(gauge.get(), 3);
    assert_eq!(blocks.due(10, 100), ["k1", "k3"]);
    assert_eq!(blocks.due(10, 7), ["k1"], "k3's head is not passed yet");
    assert_eq!(blocks.next_retry_ms(), Some(10));
    blocks.replace(BTreeMap::new(), 0, false);
    assert!(blocks.is_empty());
    blocks.add_parked(1);
    drop(blocks);
    assert_eq!(gauge.get(), 0, "a stopped worker takes its rows off the gauge");
}

#[test]
fn records_round_trip_through_their_row_form() {
    let headers = OwnedHeaders::new()
        .insert(Header { key: "ce_id", value: Some("abc") })
        .insert(Header::<&[u8]> { key: "binary", value: Some(&[0, 255, 16]) })
        .insert(Header::<&[u8]> { key: "empty", value: None });
    let message = OwnedMessage::new(
        Some(vec![0, 1, 2]),
        Some(b"k1".to_vec()),
        "orders".into(),
        Timestamp::CreateTime(1_700_000_000_000),
        2,
        41,
        Some(headers),
    );
    let mut record = ParkedRecord::of(&message, "k1", "abc".into(), ParkedState::Parked);
    record.headers = headers_from_text(&headers_to_text(&record.headers));
    let again = record.to_message();
    assert_eq!((again.topic(), again.partition(), again.offset()), ("orders", 2, 41));
    assert_eq!((again.key(), again.payload()), (Some(&b"k1"[..]), Some(&[0u8, 1, 2][..])));
    assert_eq!(again.timestamp().to_millis(), Some(1_700_000_000_000));
    let read: Vec<(String, Option<Vec<u8>>)> =
        again.headers().unwrap().iter().map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec))).collect();
    assert_eq!(
        read,
        [
            ("ce_id".to_owned(), Some(b"abc".to_vec())),
            ("binary".into(), Some(vec![0, 255, 16])),
            ("empty".into(), None)
        ]
    );
    assert_eq!(unhex("0g"), None);
}
