//! The node's container runtime: images (store, import, pull), root filesystems (overlay), and
//! later pod sandboxes and containers. Every privileged call sits behind a narrow interface.

pub mod container;
pub mod image;
pub mod sandbox;
