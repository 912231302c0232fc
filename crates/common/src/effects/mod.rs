//! The effect ledger: side effects (an email, a webhook call) performed exactly once per
//! event, effect kind and recipient, through redelivery, crashes, replays and rebuilds.
//!
//! # How
//! 1. **Record.** A handler records what is due with [`EffectLedger::record`] in the
//!    transaction that saves its offsets (or on its own in the `kafka` offset mode). An effect is
//!    known by its [`EffectKey`] (event id, kind, recipient); its [`EffectKey::effect_id`] is a
//!    UUID derived from the three, so every copy of the event (a redelivery, a replay, a redrive,
//!    a rebuild from earliest) derives the same id and finds the effect already recorded: it is
//!    recorded once, ever. The ledger is not part of a read model's generations, so a rebuild
//!    does not bring its effects back.
//! 2. **Perform.** The service's [`EffectWorker`] takes due effects, performs them with the
//!    service's [`Perform`] and marks each `done`, or schedules it again ([`RetrySchedule`]), or
//!    marks it `failed` with the reason once the schedule is spent. Consuming never waits for an
//!    effect: a slow or dead recipient holds up neither the partition nor other recipients.
//!
//! # The exact guarantee
//! - **Never lost:** an effect is recorded atomically with the offsets of its event, and stays
//!   due until a try of it succeeded or its schedule is spent (then `failed`, visible, with the
//!   last error).
//! - **Never performed again once done:** a `done` effect is never tried again, and a recorded
//!   one is never recorded again.
//! - **The one window:** a process that dies *after* the recipient accepted an effect and
//!   *before* its `done` commits (one database round trip), or a try that outlives its lease,
//!   leaves the effect due: it is tried again after the lease, **with the same
//!   [`EffectKey::effect_id`]**. Recipients deduplicate on that id (it is the `webhook-id` of a
//!   webhook, the `Message-ID` of an email); the worker never tries one effect in two places at
//!   once, because taking an effect moves its `due_at_ms` past the lease in one conditional
//!   update that only one worker can win.
//!
//! Handlers can tell a replayed delivery from a first one, but the ledger does not rely on that:
//! the key alone decides.

mod ledger;
mod schedule;
mod worker;

use serde::Serialize;
use uuid::Uuid;

pub use ledger::{Effect, EffectLedger, EffectState, LedgerError, Recorded};
pub use schedule::RetrySchedule;
pub use worker::{EffectWorker, EffectWorkerSettings, Perform, Tried};

/// The namespace of effect ids (UUID v5).
const EFFECT_NAMESPACE: Uuid = Uuid::from_u128(0x6576_656e_746c_696e_6500_0000_0000_0001);

/// What makes an effect the same effect: the event it is for, what it does, and to whom.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct EffectKey {
    /// The event's id (`envelope.id`), the same on every copy of it.
    pub event_id: Uuid,
    /// What the effect is, e.g. `email.order_confirmation` or `webhook`.
    pub kind: String,
    /// Who receives it, e.g. an email address or a webhook endpoint's id.
    pub recipient: String,
}

impl EffectKey {
    pub fn new(event_id: Uuid, kind: impl Into<String>, recipient: impl Into<String>) -> Self {
        Self { event_id, kind: kind.into(), recipient: recipient.into() }
    }

    /// The idempotency id every try of this effect carries: derived from the key alone, so it
    /// is the same on every delivery, replay and retry.
    pub fn effect_id(&self) -> Uuid {
        // Length-prefixed, so no two keys spell the same name.
        let name = format!(
            "{}\n{}:{}\n{}:{}",
            self.event_id,
            self.kind.len(),
            self.kind,
            self.recipient.len(),
            self.recipient
        );
        Uuid::new_v5(&EFFECT_NAMESPACE, name.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_effect_id_is_a_function_of_the_whole_key() {
        let event = Uuid::new_v4();
        let key = EffectKey::new(event, "webhook", "endpoint-1");
        assert_eq!(key.effect_id(), EffectKey::new(event, "webhook", "endpoint-1").effect_id());
        assert_ne!(key.effect_id(), EffectKey::new(event, "webhook", "endpoint-2").effect_id());
        assert_ne!(key.effect_id(), EffectKey::new(event, "email", "endpoint-1").effect_id());
        assert_ne!(key.effect_id(), EffectKey::new(Uuid::new_v4(), "webhook", "endpoint-1").effect_id());
        // A separator inside a field cannot make two keys collide.
        assert_ne!(
            EffectKey::new(event, "a\nb", "c").effect_id(),
            EffectKey::new(event, "a", "b\nc").effect_id(),
            "fields are length-prefixed"
        );
    }
}
