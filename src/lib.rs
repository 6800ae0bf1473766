//! mtaspec: black-box conformance harness for SMTP servers.
