//! `gocacheprog-s3`: run by cmd/go as `GOCACHEPROG` (`serve`, the default), or by a
//! person as `gocacheprog-s3 check`, `trim`, `prune`, `usage`, `report` or `stamp`. Parse, then run the command; the exit status is its.
use gocacheprog_s3::cli::{self, help, Action, Run};
use gocacheprog_s3::commands;
use gocacheprog_s3::{log, log::set_level};
use std::io;
use std::process::ExitCode;

// musl's allocator serializes threads: the static binary, with 64 prefetch threads, used
// ~20% more CPU than the glibc build on a warm build from the bucket (docs/development.md, "Dependencies").
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let env = |k: &str| std::env::var(k).ok();
    if let Some(path) = cli::log_file(&args, &env) {
        log::to_file(&path);
    }
    match cli::parse(args, &env) {
        Ok(Action::Run(run)) => {
            set_level(run.verbosity());
            match *run {
                Run::Serve(config) => commands::serve::run(&config),
                Run::Check(config) => commands::check::run(&config),
                Run::Trim(config) => commands::trim::run(&config),
                Run::Prune { config, unused_for } => commands::prune::run(&config, unused_for),
                Run::Usage(config) => commands::usage::run(&config),
                Run::Report(config) => commands::report::run(&config),
                Run::Stamp(config) => commands::stamp::run(&config),
            }
        }
        Ok(Action::Help(command)) => print_text(&help::help(command)),
        Ok(Action::Version) => print_text(concat!("gocacheprog-s3 ", env!("CARGO_PKG_VERSION"), "\n")),
        Err(e) => {
            log!(0, "configuration error: {e}");
            log!(0, "fix the option, variable or file named above (see gocacheprog-s3 --help)");
            ExitCode::from(2)
        }
    }
}

/// `--help` and `--version` output (a reader that stops early is not an error).
fn print_text(text: &str) -> ExitCode {
    let _ = io::Write::write_all(&mut io::stdout().lock(), text.as_bytes());
    ExitCode::SUCCESS
}
