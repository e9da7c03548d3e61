//! Container logs in the CRI format (`2016-10-06T00:17:09.669794202Z stdout F message`, `P` for
//! a partial line), rotated by size as kubelet does (`<log>`, `<log>.1`, ...).

use std::path::PathBuf;
use std::time::SystemTime;

/// The CRI log file of one container, rotated when it grows past `max_size`.
pub struct CriLogWriter {
    pub path: PathBuf,
    pub max_size: u64,
    /// How many files to keep, the current one included.
    pub max_files: usize,
}

/// Kubelet's defaults: 10 MiB per file, 5 files.
pub const DEFAULT_MAX_SIZE: u64 = 10 * 1024 * 1024;
pub const DEFAULT_MAX_FILES: usize = 5;

/// `time` as RFC 3339 in UTC with nanoseconds (Go's RFC3339Nano without trailing-zero trimming,
/// as CRI logs write it).
pub fn rfc3339_nanos(time: SystemTime) -> String {
    let _ = time;
    todo!()
}
