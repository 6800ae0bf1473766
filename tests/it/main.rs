//! Integration tests: the real binary, the real lab, the real Postfix.

mod lab;
