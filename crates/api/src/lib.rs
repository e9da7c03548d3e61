//! Kubernetes API objects, validation, defaulting, strict decoding, selectors and tables: pure logic, no I/O.
