//! A minimal S3 client over raw HTTP with hand-written SigV4 signing.
pub mod client;
pub mod credentials;
pub mod endpoint;
pub mod error;
pub mod http;
pub mod md5;
pub mod request;
pub mod retry;
pub mod sigv4;
pub mod transport;
pub mod xml;
