//! Regression driver: prints everything `parse` and `classify` make of each file named on the command line.
//!
//! `dump FILE...` writes, per file, its name, the parsed report and each
//! recipient's classification in Rust's debug form. Two builds that give
//! the same output for a corpus read it the same way, which makes this the
//! check for a change meant to alter speed and nothing else:
//! `target/release/examples/dump FILE... > before.txt`, rebuild, run again,
//! compare.

fn main() {
    let mut failed = false;
    for path in std::env::args().skip(1) {
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("dump: cannot read {path}: {e}");
                failed = true;
                continue;
            }
        };
        match bounce::parse(&bytes) {
            Ok(d) => {
                println!("== {path}\n{d:?}");
                for c in bounce::classify(&d) {
                    println!("{c:?}");
                }
            }
            Err(e) => println!("== {path}\nunreadable: {e}"),
        }
    }
    if failed {
        std::process::exit(1);
    }
}
