//! The `faultproxy` dev binary: the test and benchmark proxy on the command line
//! (scripts/bench.sh). Not shipped.

fn main() -> std::process::ExitCode {
    faultproxy::cli::main()
}
