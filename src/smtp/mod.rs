//! SMTP wire formats: commands (read by the fake hosts) and replies (read everywhere).

pub mod command;
pub use bounce::reply;
