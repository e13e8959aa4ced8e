//! A minimal S3 client over raw HTTP with hand-written SigV4 signing.
pub mod credentials;
pub mod endpoint;
pub mod sigv4;
