//! `gocacheprog-s3`: run by cmd/go as `GOCACHEPROG`; speaks the protocol on stdin/stdout.
use gocacheprog_s3::config::{self, Action, Config, RemoteConfig, HELP};
use gocacheprog_s3::local::LocalTier;
use gocacheprog_s3::protocol::{handshake_line, RequestReader, Responder, Response};
use gocacheprog_s3::remote::{Remote, Shared};
use gocacheprog_s3::server::{End, RemoteTier, Server};
use gocacheprog_s3::stats::Stats;
use gocacheprog_s3::{log, log::set_level};
use std::io::{self, BufReader};
use std::process::ExitCode;
use std::sync::Arc;

fn main() -> ExitCode {
    let args = std::env::args_os().skip(1).collect();
    let config = match config::parse(args, &|k| std::env::var(k).ok()) {
        Ok(Action::Serve(config)) => config,
        Ok(Action::Help) => return print_text(HELP),
        Ok(Action::Version) => return print_text(concat!("gocacheprog-s3 ", env!("CARGO_PKG_VERSION"), "\n")),
        Err(e) => {
            log!(0, "configuration error: {e}");
            log!(0, "fix the GOCACHEPROG command line or its GOCACHEPROG_S3_* variables (see gocacheprog-s3 --help)");
            return ExitCode::from(2);
        }
    };
    set_level(config.verbosity);
    let stats = Arc::new(Stats::new());

    // go waits for the handshake before anything else: send it before any slow set-up.
    let responder = Arc::new(Responder::new(Box::new(io::stdout())));
    responder.send_line(&handshake_line(&["get", "put", "close"]));

    let local = match LocalTier::open(&config.cache_dir) {
        Ok(local) => Arc::new(local),
        Err(e) => {
            log!(0, "the local cache directory is unusable: {e}; set GOCACHE or --cache-dir to a writable directory");
            return ExitCode::FAILURE;
        }
    };
    let sweeper = Arc::clone(&local);
    let _ = std::thread::Builder::new().name("sweep".into()).spawn(move || sweeper.sweep_stale_temp_files());
    let remote = config.remote.as_ref().map(|remote_config| {
        let shared = Shared { local: Arc::clone(&local), stats: Arc::clone(&stats), responder: Arc::clone(&responder) };
        Remote::start(&effective_remote(remote_config), shared)
    });

    let server = Server {
        local: &local,
        remote: remote.as_ref().map(|r| r as &dyn RemoteTier),
        stats: &stats,
        responder: &responder,
    };
    let mut reader = RequestReader::new(BufReader::with_capacity(256 * 1024, io::stdin().lock()));
    let end = server.run(&mut reader);

    if let (Some(remote), Some(remote_config)) = (&remote, &config.remote) {
        remote.finish(remote_config.close_timeout);
    }
    write_stats(&config, &stats);
    match end {
        Ok(End::Close(id)) => {
            responder.send(&Response { id, ..Default::default() });
            ExitCode::SUCCESS
        }
        Ok(End::Eof) => ExitCode::SUCCESS,
        Err(e) => {
            log!(0, "{e}; stopping (entries already stored are intact)");
            ExitCode::FAILURE
        }
    }
}

/// `--help` and `--version` output (a reader that stops early is not an error).
fn print_text(text: &str) -> ExitCode {
    let _ = io::Write::write_all(&mut io::stdout().lock(), text.as_bytes());
    ExitCode::SUCCESS
}

/// Without credentials the bucket can only be read anonymously (a public-read cache).
fn effective_remote(config: &RemoteConfig) -> RemoteConfig {
    let mut config = config.clone();
    if config.credentials.is_none() && !config.read_only {
        log!(
            0,
            "no AWS credentials in the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY): reading bucket \
             {:?} anonymously and uploading nothing (--read-only silences this)",
            config.bucket
        );
        config.read_only = true;
    }
    config
}

/// Writes the stats where asked, at the end of every session.
fn write_stats(config: &Config, stats: &Stats) {
    if let Some(path) = &config.stats_file {
        if let Err(e) = stats.write_json(path) {
            log!(0, "cannot write --stats-file {}: {e}", path.display());
        }
    }
    if let Some(path) = &config.metrics_csv {
        if let Err(e) = stats.append_csv(path) {
            log!(0, "cannot write --metrics-csv {}: {e}", path.display());
        }
    }
    log!(1, "{}", stats.summary());
}
