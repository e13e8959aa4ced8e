//! gocacheprog-s3: a Go build cache program (GOCACHEPROG) with a local disk tier in go's
//! own layout, backed by an S3 or S3-compatible bucket that a whole team shares.
//!
//! Data flow: [`protocol`] reads go's requests, [`server`] answers gets from [`local`]
//! (and on a miss from [`remote`]), stores puts locally and queues them for upload.
#![forbid(unsafe_code)]

pub mod base64;
pub mod clock;
pub mod config;
pub mod entry;
pub mod id;
pub mod local;
#[macro_use]
pub mod log;
pub mod protocol;
pub mod remote;
pub mod s3;
pub mod server;
pub mod stats;
