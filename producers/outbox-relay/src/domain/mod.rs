//! The relay's decisions, without I/O: names, rows to events, batch planning, backoff.

pub mod backoff;
pub mod names;
pub mod plan;
pub mod row;

pub use backoff::Backoff;
pub use names::{ChannelName, InvalidName, TableName};
pub use plan::{Mark, Outcome};
pub use row::{OutboxRow, RowError};
