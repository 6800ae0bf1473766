//! Integration tests: the real binary against the lab Postfix, and the parsers against real bounces.

mod dsn_cli;
mod dsn_corpus;
mod dsn_props;
mod dsn_reasons;
mod fuzz_regressions;
mod lab;
mod reply_diagnostics;
