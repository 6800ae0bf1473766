//! SMTP protocol parsing: replies and enhanced status codes.

pub mod reply;
