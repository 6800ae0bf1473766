//! Integration tests: the real binary against the lab Postfix, and the parsers against real bounces.

mod cli_pipe;
mod dsn_cli;
mod dsn_corpus;
mod dsn_props;
mod fuzz_regressions;
mod lab;
mod reply_diagnostics;
mod rogue;
mod sessfuzz;
