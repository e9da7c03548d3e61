//! The one Skiff binary.
fn main() {}
