//! Integration tests: the real binary against the lab Postfix (installed or in a container image), and the parsers against real bounces.

mod cli_pipe;
mod container;
mod dsn_cli;
mod dsn_corpus;
mod dsn_props;
mod dsn_reasons;
mod fuzz_regressions;
mod inbound;
mod lab;
mod reply_diagnostics;
mod rogue;
mod sessfuzz;
mod targets_chasquid;
mod targets_exim;
mod targets_opensmtpd;
mod targets_sendmail;
