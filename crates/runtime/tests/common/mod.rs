//! Helpers shared by the runtime's integration tests: a real registry and OCI image layouts
//! built in test code.
#![allow(dead_code)] // each test binary uses a different part

pub mod oci;
pub mod registry;
