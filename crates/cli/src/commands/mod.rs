pub mod schemas;
pub mod up;
pub mod setup;
pub mod publish;
