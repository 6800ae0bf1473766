//! Integration tests: parsers measured against third-party corpora and generated input.

mod dsn_corpus;
mod dsn_props;
mod fuzz_regressions;
