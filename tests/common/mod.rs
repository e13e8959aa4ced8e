// Shared helpers for the integration tests (`mod common;`). Not every test
// binary uses every helper.
#![allow(dead_code)]

pub mod go;
pub mod servers;
