//! The integration tests, in one binary (the shared helpers are compiled once): the real
//! binary under the real go, against real S3-compatible stores on 127.0.0.1, and the
//! faults injected between them by the `faultproxy` crate (tests/faultproxy).

mod common;

mod athens;
mod check;
mod credentials;
mod cross_aarch64;
mod cross_macos;
mod cross_windows;
mod faults;
mod fuzz;
mod host_settings;
mod local_tier;
mod login;
mod maintenance;
mod prefetch;
mod quiet;
mod remote_tier;
mod report;
mod s3_client;
mod scopes;
mod servers_smoke;
mod sso;
mod stamp;
mod static_binary;
mod store_access;
