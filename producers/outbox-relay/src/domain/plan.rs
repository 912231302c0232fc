//! The decisions of one batch, without I/O: which aggregates to claim, and what to record for
//! each row once the broker has answered.
//!
//! Claiming: the relay reads a window of the oldest unpublished rows, groups them by aggregate in
//! the order each aggregate first appears (oldest first), and claims whole aggregates until their
//! rows fill a batch ([`next_claim`]). Claims that another relay holds are skipped, so the next
//! aggregates are tried.
//!
//! Recording ([`decide`]), per row in id order:
//! - the event is invalid → `Rejected` (it can never succeed; the aggregate's later rows go on);
//! - the broker acknowledged it → `Published`, unless an earlier row of the same aggregate in this
//!   batch stays pending, then `HeldBack`: it stays unpublished and is sent again after that row,
//!   with the same event id, so the log never shows it as settled before its predecessor;
//! - the broker refused it → `Retry` (pending; `attempts` + 1, `last_error` set), which holds back
//!   the aggregate's later rows. Only a record-level refusal (too large, invalid record) counts
//!   towards `max_attempts`, after which the row is `Rejected`; an unreachable broker never
//!   rejects anything.

use eventline_common::kafka::Position;

/// What happened to one row's event.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Published(Position),
    Invalid(String),
    /// The broker did not acknowledge; `permanent` when retrying this record cannot help.
    Failed {
        error: String,
        permanent: bool,
    },
}

/// What to record for one row.
#[derive(Debug, Clone, PartialEq)]
pub enum Mark {
    Published(Position),
    Rejected(String),
    Retry(String),
    HeldBack,
}

/// The aggregates of `window` (aggregate ids of the oldest pending rows, in id order), each with
/// its number of rows there, in the order they first appear.
pub fn aggregates_in_order(window: &[String]) -> Vec<(String, usize)> {
    let mut order: Vec<(String, usize)> = Vec::new();
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for aggregate in window {
        match index.get(aggregate) {
            Some(&i) => order[i].1 += 1,
            None => {
                index.insert(aggregate.clone(), order.len());
                order.push((aggregate.clone(), 1));
            }
        }
    }
    order
}

/// The next aggregates to try to claim: from `from`, as few as hold `wanted` rows (at least one).
/// Returns the end of that range.
pub fn next_claim(aggregates: &[(String, usize)], from: usize, wanted: usize) -> usize {
    let mut rows = 0;
    let mut end = from;
    while end < aggregates.len() && (rows < wanted || end == from) {
        rows += aggregates[end].1;
        end += 1;
    }
    end
}

/// One mark per row. `rows` are `(aggregate_id, attempts so far)` in id order, `outcomes` align
/// with them; `max_attempts` 0 means record-level failures are retried forever.
pub fn decide(rows: &[(&str, i32)], outcomes: Vec<Outcome>, max_attempts: u32) -> Vec<Mark> {
    let mut blocked: Vec<&str> = Vec::new();
    rows.iter()
        .zip(outcomes)
        .map(|(&(aggregate, attempts), outcome)| match outcome {
            Outcome::Invalid(error) => Mark::Rejected(error),
            Outcome::Published(_) if blocked.contains(&aggregate) => Mark::HeldBack,
            Outcome::Published(position) => Mark::Published(position),
            Outcome::Failed { error, permanent } => {
                let tried = i64::from(attempts) + 1;
                if permanent && max_attempts > 0 && tried >= i64::from(max_attempts) {
                    Mark::Rejected(format!("the broker refused it {tried} times, giving up: {error}"))
                } else {
                    blocked.push(aggregate);
                    Mark::Retry(error)
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(offset: i64) -> Outcome {
        Outcome::Published(Position { topic: "orders".into(), partition: 0, offset })
    }

    fn published(offset: i64) -> Mark {
        Mark::Published(Position { topic: "orders".into(), partition: 0, offset })
    }

    fn transient() -> Outcome {
        Outcome::Failed { error: "timed out".into(), permanent: false }
    }

    #[test]
    fn aggregates_keep_the_order_of_their_oldest_row() {
        let window: Vec<String> = ["b", "a", "b", "c", "a", "b"].iter().map(|s| (*s).to_owned()).collect();
        assert_eq!(aggregates_in_order(&window), [("b".to_owned(), 3), ("a".to_owned(), 2), ("c".to_owned(), 1)]);
    }

    #[test]
    fn claims_take_whole_aggregates_until_the_batch_is_full() {
        let aggregates = [("b".to_owned(), 3), ("a".to_owned(), 2), ("c".to_owned(), 1), ("d".to_owned(), 4)];
        assert_eq!(next_claim(&aggregates, 0, 4), 2, "b and a: 5 rows");
        assert_eq!(next_claim(&aggregates, 0, 3), 1);
        assert_eq!(next_claim(&aggregates, 2, 100), 4);
        assert_eq!(next_claim(&aggregates, 1, 0), 2, "at least one aggregate");
        assert_eq!(next_claim(&aggregates, 4, 10), 4, "nothing left");
    }

    #[test]
    fn given_all_acknowledged_then_all_are_published() {
        let marks = decide(&[("a", 0), ("b", 0), ("a", 0)], vec![at(1), at(2), at(3)], 5);
        assert_eq!(marks, [published(1), published(2), published(3)]);
    }

    #[test]
    fn given_an_invalid_row_then_it_is_rejected_and_its_aggregate_goes_on() {
        let marks =
            decide(&[("a", 0), ("a", 0), ("a", 0)], vec![at(1), Outcome::Invalid("payload.x: bad".into()), at(2)], 5);
        assert_eq!(marks, [published(1), Mark::Rejected("payload.x: bad".into()), published(2)]);
    }

    #[test]
    fn given_a_failed_row_then_later_rows_of_its_aggregate_are_held_back_only() {
        let marks = decide(&[("a", 0), ("a", 2), ("b", 0), ("a", 0)], vec![at(1), transient(), at(2), at(3)], 5);
        assert_eq!(marks, [published(1), Mark::Retry("timed out".into()), published(2), Mark::HeldBack]);
    }

    #[test]
    fn given_an_unreachable_broker_then_nothing_is_ever_rejected() {
        let marks = decide(&[("a", 1_000)], vec![transient()], 3);
        assert_eq!(marks, [Mark::Retry("timed out".into())]);
    }

    #[test]
    fn given_a_record_the_broker_keeps_refusing_then_it_is_rejected_at_max_attempts() {
        let too_large = || Outcome::Failed { error: "message too large".into(), permanent: true };
        assert_eq!(decide(&[("a", 1)], vec![too_large()], 3), [Mark::Retry("message too large".into())]);
        let marks = decide(&[("a", 2), ("a", 0)], vec![too_large(), at(4)], 3);
        assert!(
            matches!(&marks[0], Mark::Rejected(text) if text.contains("3 times") && text.contains("too large")),
            "{marks:?}"
        );
        assert_eq!(marks[1], published(4), "a rejected row does not hold back its aggregate");
        assert_eq!(decide(&[("a", 50)], vec![too_large()], 0), [Mark::Retry("message too large".into())]);
    }
}
