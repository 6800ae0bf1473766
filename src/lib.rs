//! mtaspec: black-box conformance harness for SMTP servers.

pub mod dsn;
pub mod rfc;
pub mod smtp;
