//! The integration tests, in one binary (the shared helpers are compiled once): the real
//! binary under the real go, against real S3-compatible stores on 127.0.0.1, and the
//! faults injected between them by `common::faultproxy`.

mod common;

mod check;
mod credentials;
mod faults;
mod fuzz;
mod local_tier;
mod maintenance;
mod prefetch;
mod remote_tier;
mod s3_client;
mod scopes;
mod servers_smoke;
mod static_binary;
mod store_access;
