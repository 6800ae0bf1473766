//! Integration tests: the real binary against the lab Postfix (installed or in a container image), and the parsers against real bounces.

mod container;
mod dsn_cli;
mod dsn_corpus;
mod dsn_props;
mod fuzz_regressions;
mod lab;
mod reply_diagnostics;
