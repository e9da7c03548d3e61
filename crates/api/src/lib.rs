//! Kubernetes API objects, validation, defaulting, strict decoding, selectors, patches and tables:
//! pure logic, no I/O. The API server and the CLI build on this crate.

pub mod decode;
pub mod defaults;
pub mod join_token;
pub mod kinds;
pub mod openapi;
pub mod patch;
pub mod selector;
pub mod strict;
pub mod sysctl;
pub mod table;
pub mod validation;

pub use k8s_openapi;
