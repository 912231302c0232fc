pub mod schemas;
pub mod up;
pub mod setup;
pub mod publish;
pub mod tail;
pub mod groups;
