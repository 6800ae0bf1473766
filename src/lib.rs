//! mtaspec: a black-box conformance and fuzz harness for SMTP servers (MTAs).
//!
//! The pipeline: [`suite`] files load into [`suite::Scenario`] plans; the
//! [`world`] turns a plan into fake DNS zones and scripted fake hosts; the
//! [`target`] (Postfix, started in the private [`lab`]) delivers what the
//! [`client`] injects; [`run`] observes and judges each expectation; [`report`]
//! writes the console summary and JUnit XML. [`dsn`] and [`smtp`] read what
//! peers send.

pub mod cli;
pub mod client;
pub use bounce as dsn;
pub mod lab;
pub mod report;
pub mod rfc;
pub mod run;
pub mod sessfuzz;
pub mod session;
pub mod smtp;
pub mod suite;
pub mod target;
pub mod world;
