//! Reading a container's CRI log as `kubectl logs` asks for it: the messages of every rotated
//! file oldest first, from a time on (`sinceSeconds`, `sinceTime`), the last lines only
//! (`tailLines`), each prefixed with its time (`timestamps`), at most so many bytes
//! (`limitBytes`), and then following the log as the monitor appends and rotates it (`follow`).
//!
//! The reader never writes and never holds a lock: the monitor's writes are never slowed by a
//! reader, however slow its client.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::log::{rfc3339_nanos, LogStream};

/// What to read of a log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogQuery {
    /// Prefix every line with its RFC 3339 time and a space.
    pub timestamps: bool,
    /// Only the last so many lines of what is there now.
    pub tail_lines: Option<usize>,
    /// Only lines logged at or after this time.
    pub since: Option<SystemTime>,
    /// Stop after so many bytes of output.
    pub limit_bytes: Option<u64>,
    /// Only the lines of this stream (`tail_lines` still counts the lines of both).
    pub stream: Option<LogStream>,
}

/// The files of the log at `path`, oldest first: `<path>.N`, ..., `<path>.1`, `<path>` (those
/// that exist).
pub fn log_files(path: &Path) -> Vec<PathBuf> {
    let numbered = |n: usize| PathBuf::from(format!("{}.{n}", path.display()));
    let mut files: Vec<PathBuf> = (1..)
        .map(numbered)
        .take_while(|p| p.exists())
        .collect::<Vec<_>>();
    files.reverse();
    if path.exists() {
        files.push(path.to_path_buf());
    }
    files
}

/// One line of a CRI log: `<time> <stream> <F|P> <message>`.
struct Entry<'a> {
    time: &'a [u8],
    stream: &'a [u8],
    partial: bool,
    message: &'a [u8],
}

fn parse(line: &[u8]) -> Option<Entry<'_>> {
    let mut fields = line.splitn(4, |b| *b == b' ');
    let time = fields.next()?;
    let stream = fields.next()?;
    let tag = fields.next()?;
    let message = fields.next().unwrap_or_default();
    Some(Entry {
        time,
        stream,
        partial: tag == b"P",
        message,
    })
}

/// Turns log entries into output: timestamps at line starts, the byte limit.
#[derive(Debug)]
struct Formatter {
    timestamps: bool,
    /// The tag of the only stream shown, if one.
    stream: Option<&'static str>,
    since: Option<String>,
    remaining: Option<u64>,
    /// The previous entry was a partial line: this one continues it.
    continuing: bool,
    /// The line being continued started before `since`: its pieces are skipped too.
    skipping: bool,
}

impl Formatter {
    fn new(query: &LogQuery) -> Formatter {
        Formatter {
            timestamps: query.timestamps,
            stream: query.stream.map(LogStream::tag),
            since: query.since.map(rfc3339_nanos),
            remaining: query.limit_bytes,
            continuing: false,
            skipping: false,
        }
    }

    fn exhausted(&self) -> bool {
        self.remaining == Some(0)
    }

    /// Appends `entry` to `out`, as far as the byte limit allows.
    fn push(&mut self, entry: &Entry, out: &mut Vec<u8>) {
        // Another stream's entries, partial ones too, are not part of this one's lines.
        if self
            .stream
            .is_some_and(|tag| entry.stream != tag.as_bytes())
        {
            return;
        }
        let continuing = std::mem::replace(&mut self.continuing, entry.partial);
        if !continuing {
            // CRI times all have nine fractional digits and a Z, so they order as strings.
            self.skipping = self
                .since
                .as_ref()
                .is_some_and(|since| entry.time < since.as_bytes());
        }
        if self.skipping {
            return;
        }
        let mut piece = Vec::with_capacity(entry.message.len() + 40);
        if self.timestamps && !continuing {
            piece.extend_from_slice(entry.time);
            piece.push(b' ');
        }
        piece.extend_from_slice(entry.message);
        if !entry.partial {
            piece.push(b'\n');
        }
        if let Some(remaining) = &mut self.remaining {
            let take = usize::try_from(*remaining)
                .unwrap_or(usize::MAX)
                .min(piece.len());
            piece.truncate(take);
            *remaining -= take as u64;
        }
        out.extend_from_slice(&piece);
    }
}

/// The start of the last `lines` lines among `entries` (a partial entry belongs to the line
/// its final `F` entry ends).
fn tail_start(entries: &[&[u8]], lines: usize) -> usize {
    if lines == 0 {
        return entries.len();
    }
    let mut seen = 0;
    for (i, raw) in entries.iter().enumerate().rev() {
        let partial = parse(raw).is_some_and(|e| e.partial);
        if !partial {
            // An F entry ends a line; the line starts after the previous F entry.
            if seen == lines {
                return i + 1;
            }
            seen += 1;
        }
    }
    0
}

/// A log being read: what is there now, then (for `follow`) what the monitor appends.
pub struct LogReader {
    path: PathBuf,
    formatter: Formatter,
    /// The current file, read up to `pending`'s start.
    file: Option<File>,
    /// Bytes read after the last newline (a line the monitor is still writing).
    pending: Vec<u8>,
}

impl LogReader {
    /// Opens the log at `path` (missing: an empty log) and reads what `query` selects of it
    /// now. Call [`LogReader::follow`] for what comes after.
    pub fn open(path: &Path, query: &LogQuery) -> std::io::Result<(LogReader, Vec<u8>)> {
        let files = log_files(path);
        // The current file is opened before the rotated ones are read: a rotation meanwhile
        // leaves this handle on the file the older ones precede.
        let mut current = match File::open(path) {
            Ok(file) => Some(file),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let mut text = Vec::new();
        for file in files.iter().filter(|f| f.as_path() != path) {
            match std::fs::read(file) {
                Ok(bytes) => text.extend_from_slice(&bytes),
                // Rotated away meanwhile (the oldest is deleted): skip it.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        if let Some(file) = current.as_mut() {
            file.read_to_end(&mut text)?;
        }
        let complete = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let pending = text.split_off(complete);
        let entries: Vec<&[u8]> = text
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        let start = query.tail_lines.map_or(0, |n| tail_start(&entries, n));
        let mut formatter = Formatter::new(query);
        let mut out = Vec::new();
        for raw in &entries[start..] {
            if formatter.exhausted() {
                break;
            }
            if let Some(entry) = parse(raw) {
                formatter.push(&entry, &mut out);
            }
        }
        Ok((
            LogReader {
                path: path.to_path_buf(),
                formatter,
                file: current,
                pending,
            },
            out,
        ))
    }

    /// Whether the byte limit is reached: nothing more will come.
    pub fn exhausted(&self) -> bool {
        self.formatter.exhausted()
    }

    /// What the monitor wrote since the last call (empty if nothing), across rotations: the
    /// old file is read to its end before the new one is opened.
    pub fn follow(&mut self) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            if self.formatter.exhausted() {
                return Ok(out);
            }
            let mut bytes = std::mem::take(&mut self.pending);
            if let Some(file) = self.file.as_mut() {
                file.read_to_end(&mut bytes)?;
            }
            let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            self.pending = bytes.split_off(complete);
            for raw in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                if let Some(entry) = parse(raw) {
                    self.formatter.push(&entry, &mut out);
                }
            }
            // Rotated: the path now names another file (or none yet). Move to the file that
            // followed this one (a later `.N`, or the path itself) once this one is read to its
            // end, which it now is; several rotations may have happened since the last call.
            let ours = match self.file.as_ref() {
                Some(file) => Some(file.metadata()?.ino()),
                None => None,
            };
            let current = std::fs::metadata(&self.path).ok().map(|m| m.ino());
            if current.is_none() || current == ours {
                return Ok(out);
            }
            let files = log_files(&self.path);
            let position = files
                .iter()
                .position(|f| std::fs::metadata(f).ok().map(|m| m.ino()) == ours);
            // Not found: ours was rotated out of existence unread; go on from the oldest.
            let next = position.map_or(0, |p| p + 1);
            let Some(next) = files.get(next) else {
                return Ok(out);
            };
            let file = match File::open(next) {
                Ok(file) => file,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
                Err(e) => return Err(e),
            };
            // A line cut by the rotation cannot continue in a new file: the monitor writes
            // whole entries.
            self.pending.clear();
            self.file = Some(file);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::log::{CriLogWriter, LogStream};
    use std::time::Duration;

    fn write_lines(writer: &mut CriLogWriter, lines: &[&str]) {
        for line in lines {
            writer
                .write(LogStream::Stdout, format!("{line}\n").as_bytes())
                .expect("write");
        }
    }

    fn read(path: &Path, query: LogQuery) -> String {
        let (_, out) = LogReader::open(path, &query).expect("open");
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn one_stream_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("0.log");
        let mut writer = CriLogWriter::open(&path, 1 << 20, 5).expect("writer");
        writer
            .write(LogStream::Stdout, b"out one\nout ")
            .expect("write");
        writer
            .write(LogStream::Stderr, b"err one\n")
            .expect("write");
        writer.write(LogStream::Stdout, b"two\n").expect("write");
        writer.finish().expect("finish");
        let only = |stream| LogQuery {
            stream: Some(stream),
            ..LogQuery::default()
        };
        assert_eq!(read(&path, only(LogStream::Stdout)), "out one\nout two\n");
        assert_eq!(read(&path, only(LogStream::Stderr)), "err one\n");
        assert_eq!(
            read(&path, LogQuery::default()),
            "out one\nerr one\nout two\n"
        );
    }

    #[test]
    fn whole_log_tail_limit_and_timestamps() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("0.log");
        let mut writer = CriLogWriter::open(&path, 1 << 20, 5).expect("writer");
        write_lines(&mut writer, &["one", "two", "three"]);
        writer.write(LogStream::Stderr, b"four").expect("write");
        writer.finish().expect("finish");
        assert_eq!(read(&path, LogQuery::default()), "one\ntwo\nthree\nfour\n");
        let tail = LogQuery {
            tail_lines: Some(2),
            ..LogQuery::default()
        };
        assert_eq!(read(&path, tail), "three\nfour\n");
        let none = LogQuery {
            tail_lines: Some(0),
            ..LogQuery::default()
        };
        assert_eq!(read(&path, none), "");
        let limited = LogQuery {
            limit_bytes: Some(6),
            ..LogQuery::default()
        };
        assert_eq!(read(&path, limited), "one\ntw");
        let stamped = read(
            &path,
            LogQuery {
                timestamps: true,
                tail_lines: Some(1),
                ..LogQuery::default()
            },
        );
        let (time, message) = stamped.split_once(' ').expect("a timestamp");
        assert!(time.ends_with('Z') && time.len() == 30, "{stamped}");
        assert_eq!(message, "four\n");
    }

    #[test]
    fn partial_lines_are_one_line_for_tail_and_since_filters_by_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("0.log");
        std::fs::write(
            &path,
            "2026-01-01T00:00:00.000000000Z stdout F old\n\
             2026-01-01T00:00:05.000000000Z stdout P new \n\
             2026-01-01T00:00:06.000000000Z stdout F line\n\
             2026-01-01T00:00:07.000000000Z stdout F last\n",
        )
        .expect("write");
        let tail = LogQuery {
            tail_lines: Some(2),
            timestamps: true,
            ..LogQuery::default()
        };
        assert_eq!(
            read(&path, tail),
            "2026-01-01T00:00:05.000000000Z new line\n2026-01-01T00:00:07.000000000Z last\n"
        );
        let since = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_601); // 00:00:01
        let query = LogQuery {
            since: Some(since),
            ..LogQuery::default()
        };
        assert_eq!(read(&path, query), "new line\nlast\n");
    }

    #[test]
    fn rotated_files_are_read_oldest_first_and_follow_crosses_a_rotation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("0.log");
        // Entries are about 45 bytes: a 100-byte file holds two or three.
        let mut writer = CriLogWriter::open(&path, 100, 5).expect("writer");
        write_lines(&mut writer, &["a", "b", "c", "d", "e"]);
        assert!(log_files(&path).len() >= 2, "{:?}", log_files(&path));
        let (mut reader, out) = LogReader::open(&path, &LogQuery::default()).expect("open");
        assert_eq!(out, b"a\nb\nc\nd\ne\n");
        assert!(reader.follow().expect("follow").is_empty());
        write_lines(&mut writer, &["f", "g", "h", "i"]);
        let mut followed = reader.follow().expect("follow");
        // A second call picks up anything written between the read and the rotation check.
        followed.extend(reader.follow().expect("follow"));
        assert_eq!(String::from_utf8_lossy(&followed), "f\ng\nh\ni\n");
    }

    #[test]
    fn a_missing_log_is_empty_until_it_appears() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("0.log");
        let (mut reader, out) = LogReader::open(&path, &LogQuery::default()).expect("open");
        assert!(out.is_empty());
        let mut writer = CriLogWriter::open(&path, 1 << 20, 5).expect("writer");
        write_lines(&mut writer, &["hello"]);
        assert_eq!(reader.follow().expect("follow"), b"hello\n");
    }
}
