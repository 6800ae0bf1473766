//! SMTP wire formats: commands (read by the fake hosts) and replies.

pub mod command;
