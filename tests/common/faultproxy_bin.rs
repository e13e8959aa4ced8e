// The `faultproxy` dev binary (feature `dev-proxy`): the test and benchmark proxy of
// tests/common/faultproxy.rs on the command line. Not shipped.

// The binary uses only the command-line part of the test module.
#[allow(dead_code)]
#[path = "faultproxy.rs"]
mod faultproxy;

fn main() -> std::process::ExitCode {
    faultproxy::cli_main()
}
