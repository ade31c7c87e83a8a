//! The binary log as it is in the snapshot: which files there are (the index,
//! whose entries may be absolute paths into the LIVE server's directory), and
//! where the last file's last complete transaction ends.
//!
//! The file is read event by event (v4 format: a 19-byte header, CRC32 when
//! checksums are on), never trusting its size: a torn tail (a copy cut short,
//! a crash-consistent snapshot without sync_binlog=1) is bytes after the last
//! complete transaction, and MariaDB's recovery keeps them (`SHOW BINARY LOGS`
//! then counts them). The restore point is the offset a `SHOW BINARY LOG
//! STATUS` taken while commits were blocked would have shown: the end of the
//! last complete event group, not counting a closing Stop or Rotate event.

use crate::exit;
use anyhow::Context;
use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

pub const MAGIC: [u8; 4] = [0xfe, b'b', b'i', b'n'];
const HEADER_LEN: u64 = 19;
/// LOG_EVENT_BINLOG_IN_USE_F in the format description event's header flags:
/// set while a server has the file open (cleared when it is closed cleanly).
const IN_USE: u16 = 0x1;

/// Event type codes (MySQL `binlog_event.h`, MariaDB `log_event.h`).
mod event {
    pub const START_V3: u8 = 1;
    pub const QUERY: u8 = 2;
    pub const STOP: u8 = 3;
    pub const ROTATE: u8 = 4;
    pub const FORMAT_DESCRIPTION: u8 = 15;
    pub const XID: u8 = 16;
    pub const EXECUTE_LOAD_QUERY: u8 = 18;
    pub const INCIDENT: u8 = 26;
    pub const GTID: u8 = 33;
    pub const ANONYMOUS_GTID: u8 = 34;
    pub const PREVIOUS_GTIDS: u8 = 35;
    pub const XA_PREPARE: u8 = 38;
    pub const TRANSACTION_PAYLOAD: u8 = 40;
    pub const GTID_TAGGED: u8 = 42;
    pub const MARIADB_BINLOG_CHECKPOINT: u8 = 161;
    pub const MARIADB_GTID: u8 = 162;
    pub const MARIADB_GTID_LIST: u8 = 163;
    pub const MARIADB_START_ENCRYPTION: u8 = 164;
    pub const MARIADB_QUERY_COMPRESSED: u8 = 165;
}

/// MariaDB GTID event flag: the group is this one event's successor alone (DDL).
const FL_STANDALONE: u8 = 1;

/// How the last file ends after its last complete event group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tail {
    /// Nothing after it (a live file caught by the snapshot).
    Clean,
    /// A Stop event: the server was shut down cleanly.
    Stop,
    /// A Rotate event: the server moved on to a file the index does not list.
    Rotate,
    /// Complete events of a group that never ended (no Xid/COMMIT): a
    /// transaction the copy does not hold.
    Incomplete { bytes: u64 },
    /// A partial or damaged event: the file was cut short or overwritten.
    /// `bytes`: everything after the last complete transaction.
    Torn { bytes: u64, why: String },
    /// Events that cannot be read without the server's key (MariaDB
    /// encrypt_binlog): only the server can tell where they end.
    Encrypted,
}

impl Tail {
    /// For messages and the report.
    pub fn describe(&self) -> String {
        match self {
            Tail::Clean => "nothing after it".into(),
            Tail::Stop => "a Stop event after it (the server was shut down cleanly)".into(),
            Tail::Rotate => "a Rotate event after it".into(),
            Tail::Incomplete { bytes } => {
                format!("{bytes} bytes of a transaction that never committed after it")
            }
            Tail::Torn { bytes, why } => {
                format!("{bytes} bytes after it that hold no complete transaction ({why})")
            }
            Tail::Encrypted => "encrypted events after it (only the server can read them)".into(),
        }
    }
}

/// What one binary log file holds.
#[derive(Debug, Clone)]
pub struct Scan {
    pub size: u64,
    /// The restore point: end of the last complete event group (or of the
    /// last metadata event after it, e.g. a MariaDB Binlog_checkpoint).
    pub end: u64,
    /// Offsets equivalent to `end` for a restore point: the end of the last
    /// transaction and every offset after it reached through metadata events
    /// only (Binlog_checkpoint, Gtid_list, Previous_gtids), ascending. A
    /// position recorded at any of them is the same point of the data.
    pub equivalent: Vec<u64>,
    /// Complete transactions (event groups) in this file.
    pub transactions: u64,
    pub tail: Tail,
    /// LOG_EVENT_BINLOG_IN_USE_F: the server had this file open.
    pub in_use: bool,
    pub checksums: bool,
    /// Server ids found in event headers (up to a few).
    pub server_ids: BTreeSet<u32>,
    /// MySQL GTID events or a non-empty Previous_gtids: the server ran with gtid_mode=ON.
    pub mysql_gtids: bool,
    /// From the format description event, e.g. "10.11.19-MariaDB-log".
    pub server_version: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    /// After a MySQL GTID event: `BEGIN` opens a transaction, anything else
    /// (DDL, XA COMMIT) is the group by itself.
    AfterGtid,
    /// After a MariaDB GTID event flagged standalone: the next statement ends it.
    Standalone,
    InTransaction,
}

/// Whether a Query event's text ends the transaction it is in.
fn ends_transaction(text: &str) -> bool {
    let t = text
        .trim()
        .trim_end_matches(';')
        .trim()
        .to_ascii_uppercase();
    t == "COMMIT" || t == "ROLLBACK" || t.starts_with("XA COMMIT") || t.starts_with("XA ROLLBACK")
}

fn begins_transaction(text: &str) -> bool {
    let t = text.trim().to_ascii_uppercase();
    t == "BEGIN" || t.starts_with("XA START") || t.starts_with("XA BEGIN")
}

/// CRC-32 (IEEE 802.3, as zlib's crc32), the binary log's event checksum.
fn crc32(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, slot) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
            *slot = c;
        }
        t
    });
    let mut crc = !0u32;
    for &b in data {
        crc = table[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// What the format description event says about the events after it.
struct Format {
    checksums: bool,
    /// Post-header length of Query events (13 in v4).
    query_post_header: usize,
}

/// Parse a format description event (`ev` is the whole event): its
/// settings, the server version and the header flags.
fn format_description(ev: &[u8]) -> (Format, String, u16) {
    let flags = u16_at(ev, 17);
    let body = &ev[HEADER_LEN as usize..];
    let version = body
        .get(2..52)
        .map(|v| {
            let end = v.iter().position(|b| *b == 0).unwrap_or(v.len());
            String::from_utf8_lossy(&v[..end]).into_owned()
        })
        .unwrap_or_default();
    // Servers that know checksums (MySQL >= 5.6.1, MariaDB >= 5.3) end the
    // event with the algorithm byte and the event's own 4-byte checksum,
    // which the caller checks like any other event's.
    let checksums = ev.len() >= HEADER_LEN as usize + 57 + 5 && ev[ev.len() - 5] == 1;
    // The post-header lengths start after binlog_version(2), server_version(50),
    // create_timestamp(4), header_length(1); Query is type 2, index 1.
    let query_post_header = body.get(57 + 1).map(|b| *b as usize).unwrap_or(13);
    (
        Format {
            checksums,
            query_post_header,
        },
        version,
        flags,
    )
}

/// The statement text of a Query event (`ev` without its checksum).
fn query_text(ev: &[u8], post_header: usize) -> String {
    let body = &ev[HEADER_LEN as usize..];
    if body.len() < post_header.max(13) {
        return String::new();
    }
    let db_len = body[8] as usize;
    let status_len = u16_at(body, 11) as usize;
    let start = post_header + status_len + db_len + 1;
    body.get(start..)
        .map(|q| String::from_utf8_lossy(&q[..q.len().min(64)]).into_owned())
        .unwrap_or_default()
}

/// Read `path` event by event and find where its last complete event group ends.
pub fn scan(path: &Path) -> anyhow::Result<Scan> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let size = file
        .metadata()
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    scan_reader(BufReader::with_capacity(1 << 20, file), size)
        .with_context(|| format!("reading the binary log {}", path.display()))
}

fn scan_reader(mut r: impl Read, size: u64) -> anyhow::Result<Scan> {
    let mut magic = [0u8; 4];
    if size < 4 || r.read_exact(&mut magic).is_err() || magic != MAGIC {
        return Err(exit::fail(
            exit::INCONSISTENT,
            "not a binary log file (no binlog magic at its start)",
        ));
    }
    let mut s = Scan {
        size,
        end: 4,
        equivalent: vec![4],
        transactions: 0,
        tail: Tail::Clean,
        in_use: false,
        checksums: false,
        server_ids: BTreeSet::new(),
        mysql_gtids: false,
        server_version: String::new(),
    };
    let mut format: Option<Format> = None;
    let mut state = State::Idle;
    let mut offset = 4u64;
    let mut closed_by: Option<u8> = None;
    let mut ev: Vec<u8> = Vec::new();
    let mut events = 0u64;
    loop {
        if offset == size {
            break;
        }
        events += 1;
        if events % 4096 == 0 && crate::signals::received().is_some() {
            return Err(exit::fail(
                exit::SOFTWARE,
                "interrupted while reading the binary log",
            ));
        }
        let torn = move |why: String| Tail::Torn {
            bytes: size - offset,
            why,
        };
        if size - offset < HEADER_LEN {
            s.tail = torn(format!(
                "a partial event header at offset {offset}: the file was cut short"
            ));
            break;
        }
        ev.resize(HEADER_LEN as usize, 0);
        r.read_exact(&mut ev)?;
        let kind = ev[4];
        let server_id = u32_at(&ev, 5);
        let len = u64::from(u32_at(&ev, 9));
        let next = u64::from(u32_at(&ev, 13));
        if len < HEADER_LEN {
            s.tail = torn(format!(
                "an event of impossible length {len} at offset {offset}"
            ));
            break;
        }
        if offset + len > size {
            s.tail = torn(format!(
                "the event at offset {offset} needs {len} bytes, the file has {} left: the file was cut short",
                size - offset
            ));
            break;
        }
        ev.resize(len as usize, 0);
        r.read_exact(&mut ev[HEADER_LEN as usize..])?;
        if kind == event::FORMAT_DESCRIPTION && format.is_none() {
            let (f, version, flags) = format_description(&ev);
            s.checksums = f.checksums;
            s.in_use = flags & IN_USE != 0;
            s.server_version = version;
            format = Some(f);
        } else if format.is_none() && kind != event::START_V3 {
            s.tail = torn(format!(
                "the first event (type {kind}) is not a format description"
            ));
            break;
        }
        let checksums = format.as_ref().is_some_and(|f| f.checksums);
        let body_end = if checksums {
            if len < HEADER_LEN + 4 {
                s.tail = torn(format!(
                    "an event too short for its checksum at offset {offset}"
                ));
                break;
            }
            let stored = u32_at(&ev, ev.len() - 4);
            // The format description's checksum is computed with the in-use
            // flag clear (the flag is cleared in place when the file is closed).
            let computed = if kind == event::FORMAT_DESCRIPTION {
                let mut copy = ev[..ev.len() - 4].to_vec();
                copy[17] &= !(IN_USE as u8);
                crc32(&copy)
            } else {
                crc32(&ev[..ev.len() - 4])
            };
            if computed != stored {
                s.tail = torn(format!("checksum mismatch in the event at offset {offset}"));
                break;
            }
            ev.len() - 4
        } else {
            ev.len()
        };
        if next != 0 && next != offset + len {
            s.tail = torn(format!(
                "the event at offset {offset} says the next one starts at {next}, not {}",
                offset + len
            ));
            break;
        }
        if closed_by.is_some() {
            s.tail = torn(format!(
                "events follow the closing Stop/Rotate event (at offset {offset})"
            ));
            break;
        }
        let end = offset + len;
        if s.server_ids.len() < 8 && server_id != 0 {
            s.server_ids.insert(server_id);
        }
        let query_post_header = format.as_ref().map_or(13, |f| f.query_post_header);
        // Advance the group state; Some(content) when a unit completes here.
        let completed: Option<bool> = match kind {
            event::STOP | event::ROTATE if state == State::Idle => {
                closed_by = Some(kind);
                None
            }
            event::FORMAT_DESCRIPTION
            | event::START_V3
            | event::PREVIOUS_GTIDS
            | event::MARIADB_GTID_LIST
            | event::MARIADB_BINLOG_CHECKPOINT
                if state == State::Idle =>
            {
                if kind == event::PREVIOUS_GTIDS && body_end >= HEADER_LEN as usize + 8 {
                    let n = u32_at(&ev, HEADER_LEN as usize);
                    s.mysql_gtids |= n > 0;
                }
                Some(false)
            }
            event::MARIADB_START_ENCRYPTION => {
                s.tail = Tail::Encrypted;
                break;
            }
            event::MARIADB_GTID => {
                let flags = ev.get(HEADER_LEN as usize + 12).copied().unwrap_or(0);
                state = if flags & FL_STANDALONE != 0 {
                    State::Standalone
                } else {
                    State::InTransaction
                };
                None
            }
            event::GTID | event::ANONYMOUS_GTID | event::GTID_TAGGED => {
                s.mysql_gtids |= kind != event::ANONYMOUS_GTID;
                state = State::AfterGtid;
                None
            }
            event::QUERY | event::MARIADB_QUERY_COMPRESSED | event::EXECUTE_LOAD_QUERY => {
                // A compressed query is a long statement: never BEGIN or COMMIT.
                let text = if kind == event::QUERY {
                    query_text(&ev[..body_end], query_post_header)
                } else {
                    String::new()
                };
                match state {
                    State::InTransaction if ends_transaction(&text) => {
                        state = State::Idle;
                        Some(true)
                    }
                    State::InTransaction => None,
                    _ if begins_transaction(&text) => {
                        state = State::InTransaction;
                        None
                    }
                    _ => {
                        state = State::Idle;
                        Some(true)
                    }
                }
            }
            event::XID | event::XA_PREPARE | event::TRANSACTION_PAYLOAD => {
                state = State::Idle;
                Some(true)
            }
            event::INCIDENT if state == State::Idle => Some(true),
            _ => None,
        };
        match completed {
            Some(true) => {
                s.transactions += 1;
                s.equivalent = vec![end];
            }
            Some(false) => s.equivalent.push(end),
            None => {}
        }
        if completed.is_some() {
            s.end = end;
        }
        offset = end;
    }
    if let Tail::Torn { bytes, .. } = &mut s.tail {
        *bytes = size - s.end;
    }
    if matches!(s.tail, Tail::Clean) {
        s.tail = match closed_by {
            Some(event::STOP) => Tail::Stop,
            Some(_) => Tail::Rotate,
            None if s.end < size => Tail::Incomplete {
                bytes: size - s.end,
            },
            None => Tail::Clean,
        };
    }
    Ok(s)
}

/// A binary log (or relay log) series as the snapshot holds it.
#[derive(Debug, Clone)]
pub struct Series {
    /// Where its files are in the snapshot.
    pub dir: PathBuf,
    /// The index file's name (in `dir`).
    pub index_name: String,
    /// e.g. "binlog" for binlog.000001.
    pub basename: String,
    /// File names listed in the index that exist in `dir`, in order.
    pub files: Vec<String>,
    /// Names listed in the index that are not in `dir`.
    pub missing: Vec<String>,
    /// The index names files by absolute path: on the host it was taken
    /// from, a server started on the copy without rewriting it would read
    /// (and could purge) the live server's files.
    pub absolute: bool,
}

impl Series {
    /// The last file the index lists (the one being written at the snapshot).
    pub fn last(&self) -> Option<&str> {
        self.files.last().map(String::as_str)
    }

    pub fn is_relay(&self) -> bool {
        self.basename.contains("relay-bin") || self.basename.ends_with("relay")
    }
}

/// "binlog.000012" -> "binlog".
fn basename_of(name: &str) -> Option<&str> {
    let (base, number) = name.rsplit_once('.')?;
    (!base.is_empty() && !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()))
        .then_some(base)
}

/// Read one index file; None when it is not a log index.
fn read_index(dir: &Path, index: &Path) -> Option<Series> {
    let text = std::fs::read_to_string(index).ok()?;
    let entries: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let first = *entries.first()?;
    let name_of = |e: &str| {
        Path::new(e)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
    };
    let basename = basename_of(&name_of(first)?)?.to_string();
    let mut s = Series {
        dir: dir.to_path_buf(),
        index_name: index.file_name()?.to_string_lossy().into_owned(),
        basename,
        files: Vec::new(),
        missing: Vec::new(),
        absolute: entries.iter().any(|e| e.starts_with('/')),
    };
    for e in entries {
        let name = name_of(e)?;
        if basename_of(&name) != Some(s.basename.as_str()) {
            return None;
        }
        if dir.join(&name).is_file() {
            s.files.push(name);
        } else {
            s.missing.push(name);
        }
    }
    Some(s)
}

/// Every log index in `dir`: (binary logs, relay logs).
pub fn find(dir: &Path) -> anyhow::Result<(Vec<Series>, Vec<Series>)> {
    let mut binlogs = Vec::new();
    let mut relays = Vec::new();
    let entries = std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
    let mut names: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "index") && p.is_file())
        .collect();
    names.sort();
    for index in names {
        if let Some(series) = read_index(dir, &index) {
            if series.is_relay() {
                relays.push(series);
            } else {
                binlogs.push(series);
            }
        }
    }
    Ok((binlogs, relays))
}

/// The index of `series` as the copy must have it: every file by its
/// absolute path in `view` (the writable view of `series.dir`), so that the
/// server reads the snapshot's files and nothing on the host it came from.
pub fn rewritten_index(series: &Series, view: &Path) -> String {
    series
        .files
        .iter()
        .map(|f| format!("{}\n", view.join(f).display()))
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds binary log files event by event, with CRC32 checksums.
    pub struct Builder {
        pub bytes: Vec<u8>,
        server_id: u32,
        mariadb: bool,
    }

    impl Builder {
        pub fn new(mariadb: bool) -> Builder {
            let mut b = Builder {
                bytes: MAGIC.to_vec(),
                server_id: 1,
                mariadb,
            };
            // Format description: version 4, server version, timestamp,
            // header length 19, post-header lengths (Query: 13), alg 1.
            let mut body = vec![4u8, 0];
            let mut version = [0u8; 50];
            let v: &[u8] = if mariadb {
                b"10.11.19-MariaDB-log"
            } else {
                b"9.7.4"
            };
            version[..v.len()].copy_from_slice(v);
            body.extend_from_slice(&version);
            body.extend_from_slice(&[0, 0, 0, 0, 19]);
            let mut post = vec![0u8; 40];
            post[1] = 13;
            body.extend_from_slice(&post);
            body.push(1);
            b.event(event::FORMAT_DESCRIPTION, &body, IN_USE);
            b
        }

        pub fn event(&mut self, kind: u8, body: &[u8], flags: u16) -> u64 {
            let start = self.bytes.len() as u64;
            let len = 19 + body.len() as u32 + 4;
            let mut ev = Vec::new();
            ev.extend_from_slice(&0u32.to_le_bytes());
            ev.push(kind);
            ev.extend_from_slice(&self.server_id.to_le_bytes());
            ev.extend_from_slice(&len.to_le_bytes());
            ev.extend_from_slice(&(start as u32 + len).to_le_bytes());
            ev.extend_from_slice(&flags.to_le_bytes());
            ev.extend_from_slice(body);
            let mut summed = ev.clone();
            if kind == event::FORMAT_DESCRIPTION {
                summed[17] &= !(IN_USE as u8);
            }
            let crc = crc32(&summed);
            ev.extend_from_slice(&crc.to_le_bytes());
            self.bytes.extend_from_slice(&ev);
            self.bytes.len() as u64
        }

        pub fn query(&mut self, text: &str) -> u64 {
            let mut body = vec![0u8; 13];
            body[8] = 3; // db "app"
            body.extend_from_slice(b"app\0");
            body.extend_from_slice(text.as_bytes());
            self.event(event::QUERY, &body, 0)
        }

        pub fn gtid(&mut self, standalone: bool) -> u64 {
            if self.mariadb {
                let mut body = vec![0u8; 13];
                body[12] = if standalone { FL_STANDALONE } else { 0 };
                self.event(event::MARIADB_GTID, &body, 0)
            } else {
                self.event(event::GTID, &[0u8; 42], 0)
            }
        }

        /// One row-based transaction; returns where it ends.
        pub fn transaction(&mut self) -> u64 {
            self.gtid(false);
            if !self.mariadb {
                self.query("BEGIN");
            }
            self.event(19, &[0u8; 20], 0); // table map
            self.event(30, &[0u8; 30], 0); // write rows
            self.event(event::XID, &[0u8; 8], 0)
        }

        pub fn scan(&self) -> Scan {
            scan_reader(&self.bytes[..], self.bytes.len() as u64).unwrap()
        }
    }

    #[test]
    fn crc32_is_zlibs() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn the_restore_point_is_the_end_of_the_last_complete_transaction() {
        for mariadb in [true, false] {
            let mut b = Builder::new(mariadb);
            b.transaction();
            let ddl_end = {
                b.gtid(true);
                b.query("CREATE TABLE app.t2 (i INT)")
            };
            let last = b.transaction();
            let s = b.scan();
            assert!(ddl_end < last);
            assert_eq!((s.end, s.tail.clone()), (last, Tail::Clean), "{mariadb}");
            assert_eq!(s.transactions, 3);
            assert!(s.in_use && s.checksums);
            assert_eq!(s.mysql_gtids, !mariadb);
            // An unfinished transaction after it is not part of the copy's data.
            b.gtid(false);
            b.query("BEGIN");
            b.event(19, &[0u8; 20], 0);
            let s = b.scan();
            assert_eq!(s.end, last);
            assert!(matches!(s.tail, Tail::Incomplete { .. }), "{:?}", s.tail);
        }
    }

    #[test]
    fn a_cut_or_damaged_tail_is_torn_and_the_point_stays_before_it() {
        let mut b = Builder::new(true);
        let first = b.transaction();
        let second = b.transaction();
        let full = b.bytes.clone();
        // Cut in the middle of the last event.
        let cut = &full[..full.len() - 3];
        let s = scan_reader(cut, cut.len() as u64).unwrap();
        assert_eq!(s.end, first);
        assert!(
            matches!(&s.tail, Tail::Torn { why, .. } if why.contains("cut short")),
            "{:?}",
            s.tail
        );
        // A flipped byte inside the last event: its checksum fails.
        let mut bad = full.clone();
        bad[second as usize - 10] ^= 0xff;
        let s = scan_reader(&bad[..], bad.len() as u64).unwrap();
        assert_eq!(s.end, first);
        assert!(
            matches!(&s.tail, Tail::Torn { why, .. } if why.contains("checksum")),
            "{:?}",
            s.tail
        );
        // Garbage appended after a complete file.
        let mut extra = full.clone();
        extra.extend_from_slice(&[0u8; 96]);
        let s = scan_reader(&extra[..], extra.len() as u64).unwrap();
        assert_eq!(s.end, second);
        assert!(
            matches!(s.tail, Tail::Torn { bytes: 96, .. }),
            "{:?}",
            s.tail
        );
    }

    #[test]
    fn metadata_after_the_last_transaction_gives_equivalent_points_and_stop_is_not_counted() {
        let mut b = Builder::new(true);
        let trx = b.transaction();
        let checkpoint = b.event(event::MARIADB_BINLOG_CHECKPOINT, &[0u8; 12], 0);
        b.event(event::STOP, &[], 0);
        let s = b.scan();
        assert_eq!(s.end, checkpoint);
        assert_eq!(s.equivalent, vec![trx, checkpoint]);
        assert_eq!(s.tail, Tail::Stop);
        // Anything after the Stop event is damage.
        b.transaction();
        assert!(matches!(b.scan().tail, Tail::Torn { .. }));
    }

    #[test]
    fn transactions_end_only_at_commit_never_at_a_savepoint_rollback() {
        let mut b = Builder::new(false);
        let start = b.bytes.len() as u64;
        b.gtid(false);
        b.query("BEGIN");
        b.query("INSERT INTO app.m VALUES (1)");
        b.query("ROLLBACK TO `sp1`");
        let s = b.scan();
        assert_eq!(s.end, start);
        let commit = b.query("COMMIT");
        assert_eq!(b.scan().end, commit);
        assert!(ends_transaction("XA COMMIT X'31'") && !ends_transaction("ROLLBACK TO sp"));
    }

    #[test]
    fn not_a_binlog_is_an_error() {
        let err = scan_reader(&b"hello world"[..], 11).unwrap_err();
        assert!(format!("{err:#}").contains("not a binary log"), "{err:#}");
    }

    #[test]
    fn an_index_with_absolute_entries_is_found_and_rewritten_into_the_view() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for f in ["binlog.000001", "binlog.000002", "host-relay-bin.000003"] {
            std::fs::write(d.join(f), MAGIC).unwrap();
        }
        std::fs::write(
            d.join("binlog.index"),
            "/var/lib/mysql/binlog.000001\n/var/lib/mysql/binlog.000002\n",
        )
        .unwrap();
        std::fs::write(d.join("host-relay-bin.index"), "./host-relay-bin.000003\n").unwrap();
        std::fs::write(d.join("unrelated.index"), "not a log\n").unwrap();
        let (bin, relay) = find(d).unwrap();
        assert_eq!(bin.len(), 1);
        let b = &bin[0];
        assert_eq!(
            (b.basename.as_str(), b.last(), b.absolute),
            ("binlog", Some("binlog.000002"), true)
        );
        assert_eq!(relay.len(), 1);
        assert!(!relay[0].absolute);
        assert_eq!(
            rewritten_index(b, Path::new("/w/binlog")),
            "/w/binlog/binlog.000001\n/w/binlog/binlog.000002\n"
        );
    }
}
