//! `serve`: the cache program go starts. The handshake first, then the request loop over
//! the local tier and the bucket, then the session's stats.

use crate::cli::{Config, RemoteConfig};
use crate::invocation::Invocation;
use crate::job;
use crate::local::LocalTier;
use crate::protocol::{handshake_line, RequestReader, Responder, Response};
use crate::remote::prefetch::Plan;
use crate::remote::Remote;
use crate::server::{End, RemoteTier, Server};
use crate::stats::{self, Stats};
use std::io::{self, BufReader};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Serves go on stdin/stdout until it closes the session.
pub fn run(config: &Config) -> ExitCode {
    let stats = Arc::new(Stats::new());

    // go waits for the handshake before anything else: send it before any slow set-up.
    let responder = Arc::new(Responder::new(Box::new(io::stdout())));
    responder.send_line(&handshake_line(&["get", "put", "close"]));
    for s in &config.settings {
        log!(2, "{} = {} (from {})", s.name, s.value, s.source);
    }
    if let Some(why) = &config.remote_off {
        stats::inc(&stats.remote_disabled);
        log!(0, "bucket switched off for this session: {why}. The build continues with the local cache only.");
    }

    let local = match LocalTier::open(&config.cache_dir) {
        Ok(local) => Arc::new(local),
        Err(e) => {
            log!(0, "the local cache directory is unusable: {e}; set GOCACHE or --cache-dir to a writable directory");
            return ExitCode::FAILURE;
        }
    };
    // Housekeeping runs beside the build: leftovers of killed processes, and the day's trim.
    let tier = Arc::clone(&local);
    let policy = config.trim;
    let housekeeping = std::thread::Builder::new().name("housekeeping".into()).spawn(move || {
        tier.sweep_stale_temp_files();
        tier.trim_if_due(policy);
    });
    let remote = config.remote.as_ref().map(|remote_config| {
        let plan = session_plan(remote_config);
        Arc::new(Remote::start(remote_config, Arc::clone(&local), Arc::clone(&stats), plan))
    });
    let get_timeout = config.remote.as_ref().map_or(Duration::ZERO, |r| r.get_timeout);
    let remote_tier = remote.clone().map(|r| r as Arc<dyn RemoteTier>);
    let server = Server::new(Arc::clone(&local), remote_tier, Arc::clone(&stats), Arc::clone(&responder), get_timeout);
    let mut reader = RequestReader::new(BufReader::with_capacity(256 * 1024, io::stdin().lock()));
    let end = server.run(&mut reader);

    if let (Some(remote), Some(remote_config)) = (&remote, &config.remote) {
        let closing = Instant::now();
        remote.finish(remote_config.close_timeout);
        stats::add(&stats.close_wait_ms, closing.elapsed().as_millis() as u64);
    }
    if let Ok(thread) = housekeeping {
        let _ = thread.join();
    }
    write_stats(config, &stats);
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

/// Prefetch, the manifest and fast misses for sessions of go commands that build.
fn session_plan(config: &RemoteConfig) -> Option<Plan> {
    if !config.prefetch && config.fast_miss_max_keys == 0 {
        return None;
    }
    let invocation = Invocation::detect(&|k| std::env::var(k).ok());
    if !invocation.builds() {
        log!(3, "go {}: not a building command, no prefetch", invocation.subcommand.as_deref().unwrap_or("?"));
        return None;
    }
    let build_key = config.prefetch_key.clone().unwrap_or_else(|| invocation.build_key());
    log!(2, "build key {build_key}, kind {:?}", invocation.kind);
    Some(Plan {
        prefetch: config.prefetch,
        build_key,
        kind: crate::remote::manifest::kind_id(&invocation.kind),
        workers: config.prefetch_workers,
        max_bytes: config.prefetch_max_bytes,
        write: !config.read_only,
        fast_miss_max_keys: config.fast_miss_max_keys,
    })
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
    if let Some(dir) = &config.stats_dir {
        let context = job::Context {
            go: Invocation::detect(&|k| std::env::var(k).ok()).subcommand,
            bucket: config.remote.as_ref().map(|r| r.bucket.clone()),
            read_only: config.remote.as_ref().is_some_and(|r| r.read_only || r.no_sign_request),
            notices: crate::log::notices(),
        };
        if let Err(e) = job::record(dir, stats, &context) {
            log!(0, "cannot write a session file into --stats-dir {}: {e}", dir.display());
        }
    }
    log!(1, "{}", stats.summary());
}
