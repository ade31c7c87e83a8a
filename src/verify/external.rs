//! Files a data directory names but does not hold. A table created with
//! `DATA DIRECTORY` / `INDEX DIRECTORY` keeps its files elsewhere: InnoDB
//! (MariaDB, MySQL 5.7) leaves an `.isl` file in the data directory naming
//! the real `.ibd`, MyISAM and Aria leave symbolic links. A server started
//! on the snapshot would follow them to the live files, run crash recovery
//! on them and write them, and CHECK TABLE would check data the snapshot
//! does not contain. verify therefore looks for them before it makes or
//! starts anything, and refuses. (MySQL 8.0 and later record such paths in
//! the data dictionary instead: `mysql_outside` reads them from the
//! recovered server.)

use crate::exit;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// One file of the snapshot whose data lives elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outside {
    /// The file in the scanned directory, relative to it ("app/t.isl").
    pub file: PathBuf,
    /// "app.t", when the file belongs to a table (or "app" for a schema).
    pub table: Option<String>,
    /// The file is a schema's directory (a link to one).
    pub schema: bool,
    /// Where its data lives: the path the .isl names, or the link's target.
    pub target: PathBuf,
    pub kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An InnoDB link file naming a tablespace by path.
    Isl,
    /// A symbolic link whose target is outside the scanned directory.
    Symlink,
    /// A tablespace MySQL's data dictionary places outside the data directory.
    Dictionary,
}

impl Outside {
    pub fn describe(&self) -> String {
        let what = match &self.table {
            Some(t) if self.schema => format!("schema {t}: "),
            Some(t) => format!("table {t}: "),
            None => String::new(),
        };
        match self.kind {
            Kind::Isl => format!(
                "{what}{} names its InnoDB tablespace {} (DATA DIRECTORY)",
                self.file.display(),
                self.target.display()
            ),
            Kind::Symlink => format!(
                "{what}{} is a symbolic link to {}",
                self.file.display(),
                self.target.display()
            ),
            Kind::Dictionary => format!(
                "{what}the data dictionary places its tablespace at {} (DATA DIRECTORY)",
                self.target.display()
            ),
        }
    }
}

/// Every `.isl` file under `root`, and every symbolic link whose target
/// resolves outside `root`. A link is inside only when it is relative and
/// every step of its resolution (links to links included) stays under
/// `root`: an absolute link leaves the writable view verify makes of
/// `root` even when it names a path under `root` itself (the snapshot's
/// own file, which must never be written). Symbolic links are not
/// descended into (an inside one's target is scanned where it is).
/// `recursive`: the whole tree (a data directory: schemas, tablespaces),
/// else only `root`'s own entries (a binary log directory, where the
/// server opens nothing deeper).
pub fn scan(root: &Path, recursive: bool) -> anyhow::Result<Vec<Outside>> {
    let mut found = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            // A schema directory the server (root, too) could not read either.
            Err(_) if !rel.as_os_str().is_empty() => continue,
            Err(e) => Err(exit::fail(
                exit::CONFIG,
                format!(
                    "reading {} (looking for files the snapshot does not hold): {e}",
                    dir.display()
                ),
            ))?,
        };
        let mut names: Vec<_> = entries.flatten().map(|e| e.file_name()).collect();
        names.sort();
        for name in names {
            let rel_path = rel.join(&name);
            let path = root.join(&rel_path);
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let ft = meta.file_type();
            if ft.is_symlink() {
                if let Some(target) = escapes(root, &rel_path) {
                    let schema = rel.as_os_str().is_empty()
                        && std::fs::metadata(&path).is_ok_and(|m| m.is_dir());
                    found.push(Outside {
                        table: table_of(&rel_path, schema),
                        schema,
                        file: rel_path,
                        target,
                        kind: Kind::Symlink,
                    });
                }
            } else if ft.is_dir() {
                if recursive {
                    stack.push(rel_path);
                }
            } else if ft.is_file() && Path::new(&name).extension() == Some(OsStr::new("isl")) {
                let text = std::fs::read(&path).unwrap_or_default();
                let target = String::from_utf8_lossy(&text).trim().to_string();
                found.push(Outside {
                    table: table_of(&rel_path, false),
                    schema: false,
                    file: rel_path,
                    target: PathBuf::from(target),
                    kind: Kind::Isl,
                });
            }
        }
    }
    found.sort_by(|a, b| a.file.cmp(&b.file));
    Ok(found)
}

/// The link at `root/rel` leaves `root`: Some(where it points, as read).
fn escapes(root: &Path, rel: &Path) -> Option<PathBuf> {
    let first = std::fs::read_link(root.join(rel)).ok()?;
    // Where we are (components under root) and what is left to walk.
    let mut at: Vec<PathBuf> = rel
        .parent()
        .map(|p| {
            p.components()
                .map(|c| PathBuf::from(c.as_os_str()))
                .collect()
        })
        .unwrap_or_default();
    let mut pending: Vec<PathBuf> = Vec::new();
    let push_target = |target: &Path, pending: &mut Vec<PathBuf>| -> bool {
        if target.is_absolute() {
            return false;
        }
        // Reversed: the next component to walk is the last one.
        for c in target.components().rev() {
            pending.push(PathBuf::from(c.as_os_str()));
        }
        true
    };
    if !push_target(&first, &mut pending) {
        return Some(first);
    }
    let mut links = 0;
    while let Some(c) = pending.pop() {
        match Path::new(&c).components().next() {
            Some(Component::CurDir) | None => {}
            Some(Component::ParentDir) => {
                if at.pop().is_none() {
                    return Some(first);
                }
            }
            Some(_) => {
                at.push(c);
                let here: PathBuf = at.iter().collect();
                match std::fs::symlink_metadata(root.join(&here)) {
                    Ok(m) if m.file_type().is_symlink() => {
                        links += 1;
                        if links > 40 {
                            // A loop: the server could not open it either.
                            return None;
                        }
                        let Ok(next) = std::fs::read_link(root.join(&here)) else {
                            return None;
                        };
                        at.pop();
                        if !push_target(&next, &mut pending) {
                            return Some(first);
                        }
                    }
                    Ok(_) => {}
                    // Dangling under root: nothing outside is reached.
                    Err(_) => return None,
                }
            }
        }
    }
    None
}

/// The table (or schema) a data-directory file belongs to: "app/t.MYD" ->
/// "app.t", "app/t#P#p0.isl" -> "app.t", the directory "app" -> "app";
/// None for the server's own files (ibdata1, binary logs) at the top.
fn table_of(rel: &Path, schema_dir: bool) -> Option<String> {
    let parts: Vec<&OsStr> = rel.iter().collect();
    match parts.as_slice() {
        [schema] => schema_dir.then(|| decode(schema)),
        [schema, file] => {
            let name = decode(file);
            let stem = name.split(['.', '#']).next().unwrap_or(&name).to_string();
            Some(format!("{}.{stem}", decode(schema)))
        }
        _ => None,
    }
}

/// Undo the server's file-name encoding of identifiers (`@0024` -> `$`).
fn decode(name: &OsStr) -> String {
    let bytes = name.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'@' && i + 5 <= bytes.len() {
            if let Some(c) = std::str::from_utf8(&bytes[i + 1..i + 5])
                .ok()
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .and_then(char::from_u32)
            {
                out.push(c);
                i += 5;
                continue;
            }
        }
        let end = bytes[i..]
            .iter()
            .skip(1)
            .position(|b| *b == b'@')
            .map_or(bytes.len(), |p| i + 1 + p);
        out.push_str(&String::from_utf8_lossy(&bytes[i..end]));
        i = end;
    }
    out
}

/// The refusal (exit 78) for what `scan` found in each directory (`what`:
/// "in the data directory" and the like).
/// `started`: found by the server after recovery (MySQL's dictionary).
pub fn refusal(found: &[(&Path, &str, Vec<Outside>)], started: bool) -> Option<anyhow::Error> {
    let mut lines = Vec::new();
    let mut tables: Vec<String> = Vec::new();
    for (dir, what, list) in found {
        for o in list {
            lines.push(format!("{} ({what} {})", o.describe(), dir.display()));
            if let Some(t) = &o.table {
                if !tables.contains(t) {
                    tables.push(t.clone());
                }
            }
        }
    }
    if lines.is_empty() {
        return None;
    }
    let which = if tables.is_empty() {
        String::new()
    } else {
        format!(" ({})", tables.join(", "))
    };
    let how = if started {
        "its server found them in the data dictionary after crash recovery, and would check those files instead \
         of the snapshot's (it is stopped; where verify runs as root, it could write nothing outside its view of the \
         snapshot)"
    } else {
        "a server started on it would recover, write and check those files instead of the snapshot's (nothing \
         was started or changed)"
    };
    Some(exit::fail(
        exit::CONFIG,
        format!(
            "the snapshot does not hold all its data: these files it names are outside it, where the live data \
             is; {how}:\n    {}\nA restore of this snapshot would lack that data too{which}. \
             Either snapshot the filesystems that hold those paths together with the data directory (frozen \
             together, e.g. one --freeze for each) and restore them at the same paths, which verify cannot prove; \
             or move those tables into the data directory (recreate them without DATA DIRECTORY / INDEX \
             DIRECTORY, e.g. CREATE TABLE ... LIKE, INSERT ... SELECT, RENAME TABLE) so that a snapshot of the data \
             directory holds them",
            lines.join("\n    ")
        ),
    ))
}

/// "schema/table" from a tablespace path ("/x/app/t.ibd" -> "app/t").
pub fn tablespace_name(path: &str) -> String {
    let p = Path::new(path);
    let file = p.file_stem().map(|s| s.to_string_lossy().into_owned());
    let dir = p
        .parent()
        .and_then(Path::file_name)
        .map(|s| s.to_string_lossy().into_owned());
    match (dir, file) {
        (Some(d), Some(f)) => format!("{d}/{f}"),
        (None, Some(f)) => f,
        _ => path.to_string(),
    }
}

/// MySQL 8.0 and later keep a `DATA DIRECTORY` tablespace's path in the
/// data dictionary: the tablespaces (NAME, PATH) the recovered server
/// lists whose path is not under `datadir` (its view of the snapshot).
pub fn mysql_outside(datadir: &Path, files: &[(String, String)]) -> Vec<Outside> {
    let mut out: Vec<Outside> = files
        .iter()
        .filter(|(_, path)| {
            let p = Path::new(path);
            p.is_absolute() && !p.starts_with(datadir)
        })
        .map(|(name, path)| Outside {
            file: PathBuf::from(format!("{name}.ibd")),
            table: table_of(Path::new(name), false),
            schema: false,
            target: PathBuf::from(path),
            kind: Kind::Dictionary,
        })
        .collect();
    out.sort_by(|a, b| a.file.cmp(&b.file));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn found(root: &Path) -> Vec<(String, Option<String>, String)> {
        scan(root, true)
            .unwrap()
            .into_iter()
            .map(|o| {
                (
                    o.file.display().to_string(),
                    o.table,
                    o.target.display().to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn isl_files_and_links_leaving_the_directory_are_found_and_named() {
        let outer = tempfile::tempdir().unwrap();
        let root = outer.path().join("data");
        let ext = outer.path().join("ext");
        std::fs::create_dir_all(root.join("app")).unwrap();
        std::fs::create_dir_all(root.join("other")).unwrap();
        std::fs::create_dir_all(&ext).unwrap();
        std::fs::write(root.join("ibdata1"), "x").unwrap();
        std::fs::write(root.join("app/t.ibd"), "x").unwrap();
        std::fs::write(root.join("app/far.isl"), "/elsewhere/app/far.ibd\n").unwrap();
        std::fs::write(root.join("app/p#P#p0.isl"), "/elsewhere/app/p#P#p0.ibd").unwrap();
        // MyISAM DATA DIRECTORY: an absolute link.
        symlink(ext.join("m.MYD"), root.join("app/m.MYD")).unwrap();
        // Relative, but out of the directory.
        symlink("../../ext/m.MYI", root.join("app/m.MYI")).unwrap();
        // Absolute into the directory itself: the server would write the
        // snapshot's own file, not the view's.
        symlink(root.join("app/t.ibd"), root.join("app/abs.MYD")).unwrap();
        // Inside: relative, also through another inside link and a directory link.
        symlink("t.ibd", root.join("app/ok.MYD")).unwrap();
        symlink("ok.MYD", root.join("app/ok2.MYD")).unwrap();
        symlink("app", root.join("alias")).unwrap();
        symlink("../alias/t.ibd", root.join("other/ok3.MYD")).unwrap();
        // Inside, then out through a second link.
        symlink("../ext", root.join("escape")).unwrap();
        // A server file at the top that is a link: no table.
        symlink(ext.join("m.MYD"), root.join("ibdata2")).unwrap();
        symlink("../escape/m.MYD", root.join("other/via.MYD")).unwrap();
        // Dangling under the directory: reaches nothing outside.
        symlink("missing.MYD", root.join("app/gone.MYD")).unwrap();
        // A schema directory that is a link (`@0024` is `$`).
        symlink(&ext, root.join("s@0024x")).unwrap();
        let got = found(&root);
        let t = |s: &str| Some(s.to_string());
        let ext_s = ext.display().to_string();
        assert_eq!(
            got,
            vec![
                (
                    "app/abs.MYD".into(),
                    t("app.abs"),
                    root.join("app/t.ibd").display().to_string()
                ),
                (
                    "app/far.isl".into(),
                    t("app.far"),
                    "/elsewhere/app/far.ibd".into()
                ),
                ("app/m.MYD".into(), t("app.m"), format!("{ext_s}/m.MYD")),
                ("app/m.MYI".into(), t("app.m"), "../../ext/m.MYI".into()),
                (
                    "app/p#P#p0.isl".into(),
                    t("app.p"),
                    "/elsewhere/app/p#P#p0.ibd".into()
                ),
                ("escape".into(), t("escape"), "../ext".into()),
                ("ibdata2".into(), None, format!("{ext_s}/m.MYD")),
                (
                    "other/via.MYD".into(),
                    t("other.via"),
                    "../escape/m.MYD".into()
                ),
                ("s@0024x".into(), t("s$x"), ext_s.clone()),
            ]
        );
        let err = refusal(
            &[(
                root.as_path(),
                "in the data directory",
                scan(&root, true).unwrap(),
            )],
            false,
        )
        .unwrap();
        assert_eq!(exit::code_of(&err), exit::CONFIG);
        let text = format!("{err:#}");
        assert!(text.contains(
            "table app.far: app/far.isl names its InnoDB tablespace /elsewhere/app/far.ibd"
        ));
        assert!(text.contains(&format!(
            "schema s$x: s@0024x is a symbolic link to {ext_s}"
        )));
        assert!(text.contains("nothing was started"));
    }

    #[test]
    fn a_directory_without_such_files_passes() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("app")).unwrap();
        std::fs::write(d.path().join("app/t.ibd"), "x").unwrap();
        symlink("t.ibd", d.path().join("app/l")).unwrap();
        // A loop is the server's problem, not an escape.
        symlink("b", d.path().join("a")).unwrap();
        symlink("a", d.path().join("b")).unwrap();
        assert!(scan(d.path(), true).unwrap().is_empty());
        assert!(refusal(&[(d.path(), "in the data directory", vec![])], false).is_none());
    }

    #[test]
    fn mysql_dictionary_paths_outside_the_view_are_found() {
        let files = vec![
            ("app/t".to_string(), "./app/t.ibd".to_string()),
            ("app/far".to_string(), "/elsewhere/app/far.ibd".to_string()),
            (
                "app/p#p#p1".to_string(),
                "/elsewhere/app/p#p#p1.ibd".to_string(),
            ),
            ("app/in".to_string(), "/view/app/in.ibd".to_string()),
            ("innodb_system".to_string(), "ibdata1".to_string()),
        ];
        let got = mysql_outside(Path::new("/view"), &files);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].table.as_deref(), Some("app.far"));
        assert_eq!(got[0].target, Path::new("/elsewhere/app/far.ibd"));
        assert_eq!(got[1].table.as_deref(), Some("app.p"));
        assert!(got[0]
            .describe()
            .contains("the data dictionary places its tablespace at"));
    }
}
