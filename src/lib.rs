//! gocacheprog-s3: a Go build cache program (GOCACHEPROG) with a local disk tier in go's
//! own layout, backed by an S3 or S3-compatible bucket that a whole team shares.
//!
//! Data flow: [`cli`] turns the command line and the environment into a validated
//! configuration and [`commands`] runs the command. `serve`: [`protocol`] reads go's
//! requests, `server` answers gets from [`local`] (and on a miss from [`remote`]),
//! stores puts locally and queues them for upload. `check`: the same configuration and
//! [`s3`] client, probing the bucket once. `trim`, `prune`, `usage`: the local tier's trim
//! and the bucket's listing, run once.
#![forbid(unsafe_code)]
// What is not reachable from outside says so (`pub(crate)`), so a newcomer sees the boundary.
#![warn(unreachable_pub)]
// What stays public says what it is: `cargo doc` is a newcomer's map of the boundary.
#![warn(missing_docs)]

#[macro_use]
pub mod log;

pub mod base64;
pub(crate) mod build_config;
pub mod calendar;
pub mod cli;
pub mod commands;
pub mod id;
pub(crate) mod invocation;
pub(crate) mod job;
pub mod local;
pub mod protocol;
pub mod random;
pub mod remote;
pub mod s3;
pub(crate) mod server;
pub mod stats;
