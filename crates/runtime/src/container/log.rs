//! Container logs in the CRI format (`2016-10-06T00:17:09.669794202Z stdout F message`, `P` for
//! a partial line), rotated by size as kubelet does (`<log>`, `<log>.1`, ...).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Kubelet's defaults: 10 MiB per file, 5 files.
pub const DEFAULT_MAX_SIZE: u64 = 10 * 1024 * 1024;
pub const DEFAULT_MAX_FILES: usize = 5;

/// A line longer than this is written in parts tagged `P`, as containerd splits at 16 KiB.
const MAX_LINE: usize = 16 * 1024;

/// Which stream a log line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogStream {
    Stdout,
    Stderr,
}

impl LogStream {
    /// The stream's name in a CRI log line.
    pub fn tag(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
        }
    }
}

/// The CRI log file of one container, rotated when it grows past `max_size`.
pub struct CriLogWriter {
    path: PathBuf,
    max_size: u64,
    /// How many files to keep, the current one included.
    max_files: usize,
    file: File,
    size: u64,
    /// Unfinished line of each stream (stdout, stderr).
    pending: [Vec<u8>; 2],
}

impl CriLogWriter {
    /// Opens `path` for appending (creating its directory), keeping what is there.
    pub fn open(path: &Path, max_size: u64, max_files: usize) -> std::io::Result<Self> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let size = file.metadata()?.len();
        Ok(CriLogWriter {
            path: path.to_owned(),
            max_size: max_size.max(1),
            max_files: max_files.max(1),
            file,
            size,
            pending: [Vec::new(), Vec::new()],
        })
    }

    /// Takes `bytes` read from `stream`: complete lines are written tagged `F`; the rest waits
    /// for its newline unless it grows past 16 KiB (then written tagged `P`).
    pub fn write(&mut self, stream: LogStream, bytes: &[u8]) -> std::io::Result<()> {
        let index = stream as usize;
        let mut pending = std::mem::take(&mut self.pending[index]);
        pending.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(offset) = pending[start..].iter().position(|b| *b == b'\n') {
            let end = start + offset;
            self.entry(stream, 'F', &pending[start..end])?;
            start = end + 1;
        }
        while pending.len() - start >= MAX_LINE {
            self.entry(stream, 'P', &pending[start..start + MAX_LINE])?;
            start += MAX_LINE;
        }
        pending.drain(..start);
        self.pending[index] = pending;
        Ok(())
    }

    /// Writes what is left of unfinished lines (the stream ended) as full lines.
    pub fn finish(&mut self) -> std::io::Result<()> {
        for stream in [LogStream::Stdout, LogStream::Stderr] {
            let pending = std::mem::take(&mut self.pending[stream as usize]);
            if !pending.is_empty() {
                self.entry(stream, 'F', &pending)?;
            }
        }
        self.file.flush()
    }

    fn entry(&mut self, stream: LogStream, tag: char, line: &[u8]) -> std::io::Result<()> {
        let mut entry = Vec::with_capacity(line.len() + 48);
        entry.extend_from_slice(rfc3339_nanos(SystemTime::now()).as_bytes());
        entry.push(b' ');
        entry.extend_from_slice(stream.tag().as_bytes());
        entry.push(b' ');
        entry.push(tag as u8);
        entry.push(b' ');
        entry.extend_from_slice(line);
        entry.push(b'\n');
        if self.size > 0 && self.size + entry.len() as u64 > self.max_size {
            self.rotate()?;
        }
        self.file.write_all(&entry)?;
        self.size += entry.len() as u64;
        Ok(())
    }

    /// `<log>.N-1` -> `<log>.N`, ..., `<log>` -> `<log>.1`, dropping what falls off the end.
    fn rotate(&mut self) -> std::io::Result<()> {
        let numbered = |n: usize| {
            let mut name = self.path.clone().into_os_string();
            name.push(format!(".{n}"));
            PathBuf::from(name)
        };
        if self.max_files == 1 {
            self.file.set_len(0)?;
            self.size = 0;
            return Ok(());
        }
        let _ = std::fs::remove_file(numbered(self.max_files - 1));
        for n in (1..self.max_files - 1).rev() {
            match std::fs::rename(numbered(n), numbered(n + 1)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        std::fs::rename(&self.path, numbered(1))?;
        self.file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

/// The last `max_lines` lines (at most `max_bytes` bytes) of the container's output in a CRI
/// log, as kubelet gives a terminationMessagePolicy of FallbackToLogsOnError (80 lines, 2 KiB):
/// the messages as `kubectl logs` prints them (a complete line with its newline, partial lines
/// joined).
pub fn tail(path: &Path, max_lines: usize, max_bytes: usize) -> std::io::Result<String> {
    let text = std::fs::read(path)?;
    let mut lines: Vec<Vec<u8>> = Vec::new();
    let mut joining = false;
    for entry in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let mut fields = entry.splitn(4, |b| *b == b' ');
        let (_time, _stream, tag) = (fields.next(), fields.next(), fields.next());
        let message = fields.next().unwrap_or_default();
        if !joining {
            lines.push(Vec::new());
        }
        if let Some(last) = lines.last_mut() {
            last.extend_from_slice(message);
        }
        joining = tag == Some(b"P".as_slice());
        if !joining {
            if let Some(last) = lines.last_mut() {
                last.push(b'\n');
            }
        }
    }
    let start = lines.len().saturating_sub(max_lines);
    let mut out = lines[start..].concat();
    if out.len() > max_bytes {
        out.drain(..out.len() - max_bytes);
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// `time` as RFC 3339 in UTC with nine digits of nanoseconds, as CRI log lines carry it.
pub fn rfc3339_nanos(time: SystemTime) -> String {
    let since = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_nanos()
    )
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_rfc3339_with_nanoseconds() {
        let t = SystemTime::UNIX_EPOCH + Duration::new(1_475_713_029, 669_794_202);
        assert_eq!(rfc3339_nanos(t), "2016-10-06T00:17:09.669794202Z");
        assert_eq!(
            rfc3339_nanos(SystemTime::UNIX_EPOCH),
            "1970-01-01T00:00:00.000000000Z"
        );
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339_nanos(leap), "2000-02-29T00:00:00.000000000Z");
    }

    fn lines(path: &Path) -> Vec<(String, String, String)> {
        std::fs::read_to_string(path)
            .expect("log")
            .lines()
            .map(|l| {
                let mut parts = l.splitn(4, ' ');
                let ts = parts.next().expect("ts");
                assert!(ts.ends_with('Z') && ts.len() == 30, "timestamp {ts}");
                (
                    parts.next().expect("stream").to_owned(),
                    parts.next().expect("tag").to_owned(),
                    parts.next().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn lines_partial_lines_and_streams() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/0.log");
        let mut log = CriLogWriter::open(&path, DEFAULT_MAX_SIZE, 5).expect("open");
        log.write(LogStream::Stdout, b"hello\nwor").expect("write");
        log.write(LogStream::Stderr, b"oops\n").expect("write");
        log.write(LogStream::Stdout, b"ld\n\nlast").expect("write");
        log.write(LogStream::Stdout, &vec![b'x'; MAX_LINE + 3])
            .expect("write");
        log.finish().expect("finish");
        let got = lines(&path);
        let s = |a: &str, b: &str, c: &str| (a.to_owned(), b.to_owned(), c.to_owned());
        assert_eq!(got[0], s("stdout", "F", "hello"));
        assert_eq!(got[1], s("stderr", "F", "oops"));
        assert_eq!(got[2], s("stdout", "F", "world"));
        assert_eq!(got[3], s("stdout", "F", ""));
        assert_eq!(got[4].1, "P");
        assert_eq!(got[4].2.len(), MAX_LINE);
        assert!(got[4].2.starts_with("lastxxx"));
        assert_eq!(got[5], s("stdout", "F", "xxxxxxx"));
        assert_eq!(got.len(), 6);
    }

    #[test]
    fn tail_gives_the_last_messages() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("0.log");
        let mut log = CriLogWriter::open(&path, DEFAULT_MAX_SIZE, 5).expect("open");
        for i in 0..100 {
            log.write(LogStream::Stdout, format!("line {i}\n").as_bytes())
                .expect("write");
        }
        log.write(LogStream::Stderr, &vec![b'y'; MAX_LINE + 2])
            .expect("write");
        log.write(LogStream::Stderr, b"\n").expect("write");
        log.finish().expect("finish");
        let text = tail(&path, 2, 100_000).expect("tail");
        assert_eq!(text, format!("line 99\n{}\n", "y".repeat(MAX_LINE + 2)));
        assert_eq!(tail(&path, 80, 10).expect("tail"), "yyyyyyyyy\n");
    }

    #[test]
    fn rotation_keeps_max_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("0.log");
        let mut log = CriLogWriter::open(&path, 200, 3).expect("open");
        for i in 0..40 {
            log.write(LogStream::Stdout, format!("line {i:03}\n").as_bytes())
                .expect("write");
        }
        log.finish().expect("finish");
        let names: Vec<_> = {
            let mut n: Vec<_> = std::fs::read_dir(dir.path())
                .expect("dir")
                .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
                .collect();
            n.sort();
            n
        };
        assert_eq!(names, vec!["0.log", "0.log.1", "0.log.2"]);
        for name in &names {
            let size = std::fs::metadata(dir.path().join(name))
                .expect("meta")
                .len();
            assert!(size <= 200, "{name} has {size} bytes");
        }
        let newest = lines(&path);
        assert_eq!(newest.last().expect("a line").2, "line 039");
        let older = lines(&dir.path().join("0.log.1"));
        let first_new: usize = newest[0].2[5..].parse().expect("n");
        let last_old: usize = older.last().expect("a line").2[5..].parse().expect("n");
        assert_eq!(last_old + 1, first_new, "no line lost across rotation");
    }
}
