//! Binary entry point: hands the command line to [`mtaspec::cli`].

fn main() -> std::process::ExitCode {
    mtaspec::cli::main()
}
