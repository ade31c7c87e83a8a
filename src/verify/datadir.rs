//! What a data directory is, from its files alone (before any server runs):
//! MySQL or MariaDB, and which version last wrote its redo log. Also refuses
//! the data directory of a running server: verify is for snapshots.

use crate::exit;
use crate::server::Flavor;
use anyhow::Context;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Server families whose data one server binary can open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Mysql,
    Mariadb,
}

impl Family {
    pub fn of(flavor: Flavor) -> Family {
        match flavor {
            Flavor::Mariadb => Family::Mariadb,
            Flavor::Mysql | Flavor::Percona => Family::Mysql,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Family::Mysql => "MySQL",
            Family::Mariadb => "MariaDB",
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct DataDir {
    pub path: PathBuf,
    pub family: Family,
    /// major.minor.patch of the server that last wrote the redo log (or ran
    /// the last upgrade), when the files say.
    pub version: Option<(u16, u16, u16)>,
    /// Where the version came from, e.g. "ib_logfile0".
    pub version_source: String,
}

impl DataDir {
    /// "MariaDB 10.11.19" or "MySQL" when the version is unknown.
    pub fn describe(&self) -> String {
        match self.version {
            Some((a, b, c)) => format!("{} {a}.{b}.{c}", self.family.name()),
            None => self.family.name().to_string(),
        }
    }
}

/// "10.11.19-MariaDB" / "MySQL 9.7.4" / "9.7.4-2" -> (10, 11, 19) etc.
pub fn parse_version(text: &str) -> Option<(u16, u16, u16)> {
    let start = text.find(|c: char| c.is_ascii_digit())?;
    let mut parts = text[start..]
        .split(|c: char| !c.is_ascii_digit())
        .take(3)
        .map(|p| p.parse::<u16>().ok());
    let major = parts.next()??;
    let minor = parts.next()??;
    let patch = parts.next().flatten().unwrap_or(0);
    Some((major, minor, patch))
}

/// The NUL-terminated "creator" string at offset 16 of a redo log header
/// ("MariaDB 10.11.19", "MySQL 9.7.4").
fn redo_creator(path: &Path) -> Option<String> {
    let mut f = std::fs::File::open(path).ok()?;
    let mut head = [0u8; 64];
    f.read_exact(&mut head).ok()?;
    let raw = &head[16..48];
    let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
    let text = String::from_utf8_lossy(&raw[..end]).trim().to_string();
    (text.starts_with("MySQL") || text.starts_with("MariaDB")).then_some(text)
}

/// MySQL >= 8.0.30 keeps the redo log in #innodb_redo/#ib_redoN (the
/// `_tmp` files are spare): the highest-numbered one is the newest.
fn newest_redo_file(datadir: &Path) -> Option<PathBuf> {
    let dir = datadir.join("#innodb_redo");
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let n: u64 = name.strip_prefix("#ib_redo")?.parse().ok()?;
            Some((n, e.path()))
        })
        .max_by_key(|(n, _)| *n)
        .map(|(_, p)| p)
}

/// Identify the data directory at `path`; exit 78 when it is not one.
pub fn detect(path: &Path) -> anyhow::Result<DataDir> {
    let meta = std::fs::metadata(path)
        .map_err(|e| exit::fail(exit::CONFIG, format!("--datadir {}: {e}", path.display())))?;
    if !meta.is_dir() {
        return Err(exit::fail(
            exit::CONFIG,
            format!("--datadir {} is not a directory", path.display()),
        ));
    }
    let path = path
        .canonicalize()
        .with_context(|| format!("resolving {}", path.display()))?;
    let has = |name: &str| path.join(name).exists();
    let innodb = has("ibdata1") || has("mysql.ibd");
    if !(has("mysql") && innodb) {
        return Err(exit::fail(
            exit::CONFIG,
            format!(
                "{} is not a MySQL or MariaDB data directory: it has no mysql/ schema directory and no InnoDB system \
                 tablespace (ibdata1 or mysql.ibd). Point --datadir at the directory that holds them inside the \
                 mounted snapshot",
                path.display()
            ),
        ));
    }
    let mut creator = None;
    let mut source = String::new();
    for candidate in [newest_redo_file(&path), Some(path.join("ib_logfile0"))]
        .into_iter()
        .flatten()
    {
        if let Some(c) = redo_creator(&candidate) {
            source = candidate
                .strip_prefix(&path)
                .unwrap_or(&candidate)
                .display()
                .to_string();
            creator = Some(c);
            break;
        }
    }
    let read = |name: &str| std::fs::read_to_string(path.join(name)).ok();
    let family = match &creator {
        Some(c) if c.starts_with("MariaDB") => Family::Mariadb,
        Some(_) => Family::Mysql,
        None if has("aria_log_control") => Family::Mariadb,
        None if has("mysql.ibd") || has("#innodb_redo") || has("auto.cnf") => Family::Mysql,
        None if read("mysql_upgrade_info").is_some_and(|v| v.contains("MariaDB"))
            || has("mariadb_upgrade_info") =>
        {
            Family::Mariadb
        }
        None => Family::Mysql,
    };
    let mut version = creator.as_deref().and_then(parse_version);
    if version.is_none() {
        // The upgrade bookkeeping: MariaDB's *_upgrade_info, MySQL's JSON history.
        for (name, text) in [
            ("mariadb_upgrade_info", read("mariadb_upgrade_info")),
            ("mysql_upgrade_info", read("mysql_upgrade_info")),
            (
                "mysql_upgrade_history",
                read("mysql_upgrade_history").and_then(|t| {
                    let v: serde_json::Value = serde_json::from_str(&t).ok()?;
                    v["upgrade_history"]
                        .as_array()?
                        .last()?
                        .get("version")?
                        .as_str()
                        .map(str::to_string)
                }),
            ),
        ] {
            if let Some(v) = text.as_deref().and_then(parse_version) {
                version = Some(v);
                source = name.to_string();
                break;
            }
        }
    }
    Ok(DataDir {
        path,
        family,
        version,
        version_source: source,
    })
}

/// Servers (mysqld, mariadbd) whose data directory is `datadir`: their
/// working directory (a server runs in its data directory) or the
/// `--datadir` on their command line is the same directory, compared by
/// device and inode, so that another path to it (a bind mount, a link, a
/// server in a chroot or another mount namespace) is no way around the
/// check. Verify must run on a snapshot, never on live files. (Other
/// processes there, such as the shell verify was started from, do not count.)
pub fn servers_using(datadir: &Path) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    let Some(want) = dev_ino(datadir) else {
        return found;
    };
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return found;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let comm = std::fs::read_to_string(p.path().join("comm")).unwrap_or_default();
        let comm = comm.trim();
        if !(comm.contains("mysqld") || comm.contains("mariadbd")) {
            continue;
        }
        if server_dirs(&p.path())
            .iter()
            .any(|d| dev_ino(d) == Some(want))
        {
            found.push((pid, comm.to_string()));
        }
    }
    found
}

/// (device, inode) of a path, following links (the /proc magic ones too).
fn dev_ino(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.dev(), m.ino()))
}

/// Where the server at `/proc/PID` keeps its data, as paths this process
/// can open: its working directory, and its --datadir (seen from its own
/// root and working directory).
fn server_dirs(proc_dir: &Path) -> Vec<PathBuf> {
    let mut dirs = vec![proc_dir.join("cwd")];
    let cmdline = std::fs::read(proc_dir.join("cmdline")).unwrap_or_default();
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    for (i, a) in args.iter().enumerate() {
        let a = String::from_utf8_lossy(a);
        let value = match a.strip_prefix("--datadir=") {
            Some(v) => Some(v.to_string()),
            None if a == "--datadir" || a == "-h" => args
                .get(i + 1)
                .map(|v| String::from_utf8_lossy(v).into_owned()),
            None => a.strip_prefix("-h").map(str::to_string),
        };
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            let v = Path::new(&v);
            dirs.push(match v.strip_prefix("/") {
                Ok(rel) => proc_dir.join("root").join(rel),
                Err(_) => proc_dir.join("cwd").join(v),
            });
        }
    }
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_is_found_by_its_working_directory_or_its_datadir_option() {
        let p = tempfile::tempdir().unwrap();
        let proc_dir = p.path();
        std::fs::write(
            proc_dir.join("cmdline"),
            b"/usr/sbin/mariadbd\0--no-defaults\0--datadir=/var/lib/mysql\0-h\0rel\0",
        )
        .unwrap();
        assert_eq!(
            server_dirs(proc_dir),
            [
                proc_dir.join("cwd"),
                proc_dir.join("root/var/lib/mysql"),
                proc_dir.join("cwd/rel")
            ]
        );
        // Another path to the same directory is the same directory.
        let d = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(d.path(), p.path().join("link")).unwrap();
        assert_eq!(dev_ino(&p.path().join("link")), dev_ino(d.path()));
        assert_ne!(dev_ino(p.path()), dev_ino(d.path()));
    }

    #[test]
    fn versions_are_read_from_every_form_the_files_use() {
        assert_eq!(parse_version("MariaDB 10.11.19"), Some((10, 11, 19)));
        assert_eq!(parse_version("10.11.19-MariaDB"), Some((10, 11, 19)));
        assert_eq!(parse_version("MySQL 9.7.4"), Some((9, 7, 4)));
        assert_eq!(parse_version("9.7.4-2"), Some((9, 7, 4)));
        assert_eq!(parse_version("8.4"), Some((8, 4, 0)));
        assert_eq!(parse_version("none"), None);
    }

    #[test]
    fn a_directory_without_the_system_schema_is_not_a_datadir() {
        let dir = tempfile::tempdir().unwrap();
        let err = detect(dir.path()).unwrap_err();
        assert_eq!(exit::code_of(&err), exit::CONFIG);
        assert!(format!("{err:#}").contains("not a MySQL or MariaDB data directory"));
        let file = dir.path().join("f");
        std::fs::write(&file, "x").unwrap();
        assert_eq!(exit::code_of(&detect(&file).unwrap_err()), exit::CONFIG);
    }

    #[test]
    fn the_redo_log_creator_names_flavor_and_version() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("mysql")).unwrap();
        std::fs::write(d.join("ibdata1"), [0u8; 64]).unwrap();
        let mut head = vec![0u8; 512];
        head[16..32].copy_from_slice(b"MariaDB 10.11.19");
        std::fs::write(d.join("ib_logfile0"), &head).unwrap();
        let dd = detect(d).unwrap();
        assert_eq!(
            (dd.family, dd.version),
            (Family::Mariadb, Some((10, 11, 19)))
        );
        assert_eq!(dd.describe(), "MariaDB 10.11.19");
        // MySQL >= 8.0.30: the newest #innodb_redo file, not the spare _tmp ones.
        std::fs::remove_file(d.join("ib_logfile0")).unwrap();
        std::fs::create_dir(d.join("#innodb_redo")).unwrap();
        let mut head = vec![0u8; 512];
        head[16..27].copy_from_slice(b"MySQL 9.7.4");
        std::fs::write(d.join("#innodb_redo/#ib_redo5"), &head).unwrap();
        std::fs::write(d.join("#innodb_redo/#ib_redo6_tmp"), [0u8; 512]).unwrap();
        let dd = detect(d).unwrap();
        assert_eq!((dd.family, dd.version), (Family::Mysql, Some((9, 7, 4))));
        assert_eq!(dd.version_source, "#innodb_redo/#ib_redo5");
    }
}
