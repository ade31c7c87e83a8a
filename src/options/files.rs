//! MySQL/MariaDB option files, read as the client libraries read them
//! (mysys/my_default): search order, `[group]`s, `!include`, `!includedir`
//! (only *.cnf, sorted by name), quotes and escapes, trailing comments,
//! world-writable files ignored with a warning.

use crate::exit;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// One `name[=value]` line of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Group name, lowercased.
    pub group: String,
    /// Option name as written (dashes/underscores not yet normalised).
    pub key: String,
    /// None for a bare `name` line.
    pub value: Option<String>,
    /// "FILE:LINE", for messages.
    pub origin: String,
    /// Why someone other than root could have written this line (the file or
    /// its directory is not root's alone); None when only root could. Keys
    /// that run commands as root must come from such files (`merge`).
    pub untrusted: Option<String>,
}

/// Where option files come from (injectable so tests never read the machine's files).
#[derive(Debug, Clone)]
pub struct Roots {
    /// The global files, in order (/etc/my.cnf, /etc/mysql/my.cnf).
    pub global: Vec<PathBuf>,
    /// The user's home directory (~/.my.cnf).
    pub home: Option<PathBuf>,
    /// We run as root: keys that run commands or choose what is frozen or
    /// written are taken only from files only root can write.
    pub as_root: bool,
}

impl Default for Roots {
    fn default() -> Roots {
        Roots {
            global: vec!["/etc/my.cnf".into(), "/etc/mysql/my.cnf".into()],
            home: std::env::var_os("HOME").map(PathBuf::from),
            as_root: nix::unistd::geteuid().is_root(),
        }
    }
}

/// Why someone other than root could have chosen what was read from `file`
/// (opened from `path`); None when only root could. Decided from the open
/// file itself (fstat: what was read is what was checked, whatever happens
/// to the path meanwhile) and from every directory and symbolic link on the
/// way to it: a directory someone else may write to, or a link someone else
/// owns, lets them put something else there. Fails closed: what cannot be
/// checked is untrusted.
pub fn untrusted(path: &Path, file: &std::fs::File) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let shown = path.display();
    let meta = match file.metadata() {
        Ok(m) => m,
        Err(e) => return Some(format!("{shown} cannot be examined ({e})")),
    };
    if meta.uid() != 0 {
        return Some(format!("{shown} belongs to uid {}, not root", meta.uid()));
    }
    if meta.mode() & 0o022 != 0 {
        return Some(format!(
            "{shown} is writable by group or others (mode {:04o})",
            meta.mode() & 0o7777
        ));
    }
    let mut dirs: Vec<PathBuf> = Vec::new();
    // The path as given, through each symbolic link on the way.
    let mut p = if path.is_absolute() {
        path.to_path_buf()
    } else {
        match std::env::current_dir() {
            Ok(cwd) => cwd.join(path),
            Err(e) => return Some(format!("{shown} cannot be examined ({e})")),
        }
    };
    for _ in 0..40 {
        let Some(parent) = p.parent().map(Path::to_path_buf) else {
            break;
        };
        let parent = match parent.canonicalize() {
            Ok(c) => c,
            Err(e) => return Some(format!("{} cannot be examined ({e})", parent.display())),
        };
        dirs.extend(parent.ancestors().map(Path::to_path_buf));
        let link = match std::fs::symlink_metadata(&p) {
            Ok(m) => m,
            Err(e) => return Some(format!("{} cannot be examined ({e})", p.display())),
        };
        if !link.file_type().is_symlink() {
            break;
        }
        if link.uid() != 0 {
            return Some(format!(
                "the symbolic link {} belongs to uid {}, who chooses what it points to",
                p.display(),
                link.uid()
            ));
        }
        match std::fs::read_link(&p) {
            Ok(target) => p = parent.join(target),
            Err(e) => return Some(format!("{} cannot be examined ({e})", p.display())),
        }
    }
    // The file actually opened.
    match std::fs::read_link(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(file)
    )) {
        Ok(real) => dirs.extend(
            real.parent()
                .into_iter()
                .flat_map(Path::ancestors)
                .map(Path::to_path_buf),
        ),
        Err(e) => return Some(format!("{shown} cannot be examined ({e})")),
    }
    dirs.sort();
    dirs.dedup();
    for dir in &dirs {
        let d = match std::fs::metadata(dir) {
            Ok(d) => d,
            Err(e) => return Some(format!("{} cannot be examined ({e})", dir.display())),
        };
        if d.uid() != 0 {
            return Some(format!(
                "the directory {} on its way belongs to uid {}, who can replace what is in it",
                dir.display(),
                d.uid()
            ));
        }
        // A sticky directory (/tmp) lets nobody else replace root's entries.
        if d.mode() & 0o022 != 0 && d.mode() & 0o1000 == 0 {
            return Some(format!(
                "the directory {} on its way is writable by group or others (mode {:04o}), who can replace \
                 what is in it",
                dir.display(),
                d.mode() & 0o7777
            ));
        }
    }
    None
}

/// The option-file options of the command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    pub no_defaults: bool,
    pub defaults_file: Option<PathBuf>,
    pub defaults_extra_file: Option<PathBuf>,
    pub group_suffix: Option<String>,
}

/// The files to read, in order (later ones override earlier ones).
/// `env` looks up environment variables.
pub fn search_order(
    sel: &Selection,
    roots: &Roots,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<Vec<PathBuf>> {
    let must_exist = |p: &Path, opt: &str| -> anyhow::Result<PathBuf> {
        if p.is_file() {
            Ok(p.to_path_buf())
        } else {
            Err(exit::fail(
                exit::CONFIG,
                format!("--{opt}={}: no such file", p.display()),
            ))
        }
    };
    if sel.no_defaults {
        return Ok(Vec::new());
    }
    if let Some(f) = &sel.defaults_file {
        return Ok(vec![must_exist(f, "defaults-file")?]);
    }
    let mut files = roots.global.clone();
    // MariaDB: "if MARIADB_HOME is set, MYSQL_HOME is not used".
    if let Some(home) = env("MARIADB_HOME")
        .or_else(|| env("MYSQL_HOME"))
        .filter(|h| !h.is_empty())
    {
        files.push(Path::new(&home).join("my.cnf"));
    }
    if let Some(extra) = &sel.defaults_extra_file {
        files.push(must_exist(extra, "defaults-extra-file")?);
    }
    if let Some(home) = &roots.home {
        files.push(home.join(".my.cnf"));
    }
    // A file listed twice is read once, at its last place (as MySQL moves directories to the end).
    let mut unique: Vec<PathBuf> = Vec::new();
    for f in files {
        unique.retain(|u| *u != f);
        unique.push(f);
    }
    Ok(unique)
}

/// Read the files in order. Missing files are skipped; world-writable ones are
/// skipped with a warning. Returns the entries of every group and the files read.
pub fn read_all(
    files: &[PathBuf],
    warnings: &mut Vec<String>,
) -> anyhow::Result<(Vec<Entry>, Vec<PathBuf>)> {
    let mut entries = Vec::new();
    let mut read = Vec::new();
    for f in files {
        if f.is_file() {
            read_file(f, 0, &mut entries, warnings, &mut read)?;
        }
    }
    Ok((entries, read))
}

const MAX_INCLUDE_DEPTH: usize = 10;

fn read_file(
    path: &Path,
    depth: usize,
    out: &mut Vec<Entry>,
    warnings: &mut Vec<String>,
    read: &mut Vec<PathBuf>,
) -> anyhow::Result<()> {
    // Opened once: what is checked is what is read, whatever happens to the
    // path meanwhile.
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()), // MySQL skips it silently
        Err(e) => {
            return Err(exit::fail(
                exit::CONFIG,
                format!("cannot read option file {}: {e}", path.display()),
            ))
        }
    };
    let meta = file.metadata().map_err(|e| {
        exit::fail(
            exit::CONFIG,
            format!("cannot examine option file {}: {e}", path.display()),
        )
    })?;
    if !meta.is_file() {
        return Ok(()); // as MySQL: only regular files are option files
    }
    if meta.permissions().mode() & 0o002 != 0 {
        warnings.push(format!(
            "World-writable config file '{}' is ignored",
            path.display()
        ));
        return Ok(());
    }
    let mut text = Vec::new();
    std::io::Read::read_to_end(&mut file, &mut text).map_err(|e| {
        exit::fail(
            exit::CONFIG,
            format!("cannot read option file {}: {e}", path.display()),
        )
    })?;
    let text = String::from_utf8_lossy(&text);
    let untrusted = untrusted(path, &file);
    read.push(path.to_path_buf());
    let mut group: Option<String> = None;
    for (n, raw) in text.lines().enumerate() {
        let origin = format!("{}:{}", path.display(), n + 1);
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(rest) = line.strip_prefix('!') {
            let (directive, arg) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            let arg = Path::new(arg.trim());
            if depth >= MAX_INCLUDE_DEPTH {
                return Err(exit::fail(
                    exit::CONFIG,
                    format!("{origin}: !include nested deeper than {MAX_INCLUDE_DEPTH}"),
                ));
            }
            match directive {
                "include" => read_file(arg, depth + 1, out, warnings, read)?,
                "includedir" => {
                    let mut names: Vec<PathBuf> = match std::fs::read_dir(arg) {
                        Ok(dir) => dir
                            .filter_map(|e| e.ok().map(|e| e.path()))
                            .filter(|p| p.extension().is_some_and(|x| x == "cnf") && p.is_file())
                            .collect(),
                        Err(_) => Vec::new(),
                    };
                    names.sort();
                    for f in names {
                        read_file(&f, depth + 1, out, warnings, read)?;
                    }
                }
                _ => {
                    return Err(exit::fail(
                        exit::CONFIG,
                        format!("{origin}: unknown directive !{directive}"),
                    ))
                }
            }
            continue;
        }
        if let Some(header) = line.strip_prefix('[') {
            let name = header.split(']').next().unwrap_or("").trim();
            group = Some(name.to_ascii_lowercase());
            continue;
        }
        let Some(group) = &group else {
            return Err(exit::fail(
                exit::CONFIG,
                // The line is not repeated: an !include can name a file only
                // root may read, and its first line must not end up in a log.
                format!("{origin}: an option comes before any [group] header"),
            ));
        };
        let line = strip_trailing_comment(line);
        let (key, value) = match line.split_once('=') {
            Some((k, v)) => (k.trim(), Some(unquote_and_unescape(v.trim()))),
            None => (line.trim(), None),
        };
        out.push(Entry {
            group: group.clone(),
            key: key.to_string(),
            value,
            origin,
            untrusted: untrusted.clone(),
        });
    }
    Ok(())
}

/// An unquoted `#` ends the line (quotes are tracked, with backslash escapes inside them).
fn strip_trailing_comment(line: &str) -> &str {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match (quote, c) {
            (Some(_), '\\') => escaped = true,
            (Some(q), c) if c == q => quote = None,
            (None, '\'' | '"') => quote = Some(c),
            (None, '#') => return line[..i].trim_end(),
            _ => {}
        }
    }
    line
}

/// Surrounding quotes are removed when both ends match; escapes are processed
/// either way: \n \t \r \b \s \" \' \\ (any other \x keeps both characters).
pub fn unquote_and_unescape(v: &str) -> String {
    let bytes = v.as_bytes();
    let inner =
        if v.len() > 1 && (bytes[0] == b'"' || bytes[0] == b'\'') && bytes[v.len() - 1] == bytes[0]
        {
            &v[1..v.len() - 1]
        } else {
            v
        };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('b') => out.push('\u{8}'),
            Some('s') => out.push(' '),
            Some(c @ ('"' | '\'' | '\\')) => out.push(c),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        p
    }

    fn parse(text: &str) -> Vec<Entry> {
        let dir = tempfile::tempdir().unwrap();
        let f = write(dir.path(), "my.cnf", text);
        read_all(&[f], &mut Vec::new()).unwrap().0
    }

    #[test]
    fn values_lose_quotes_and_keep_escapes_and_trailing_comments_go() {
        let e = parse(
            "# comment\n; also comment\n[Client]\nuser = bob  # who\npassword = \"p#ss \\\"q\\\" \\\\x\"\nx='a'\ny=a\\sb\\qc\nbare\n",
        );
        let get = |k: &str| e.iter().find(|e| e.key == k).unwrap().value.clone();
        assert_eq!(e[0].group, "client");
        assert_eq!(get("user").as_deref(), Some("bob"));
        assert_eq!(get("password").as_deref(), Some("p#ss \"q\" \\x"));
        assert_eq!(get("x").as_deref(), Some("a"));
        assert_eq!(get("y").as_deref(), Some("a b\\qc"));
        assert_eq!(get("bare"), None);
        assert!(e
            .iter()
            .find(|e| e.key == "user")
            .unwrap()
            .origin
            .ends_with("my.cnf:4"));
    }

    #[test]
    fn option_before_any_group_is_an_error_naming_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let f = write(dir.path(), "my.cnf", "\nuser=x\n");
        let err = read_all(&[f], &mut Vec::new()).unwrap_err();
        assert_eq!(exit::code_of(&err), exit::CONFIG);
        assert!(err.to_string().contains("my.cnf:2"));
    }

    #[test]
    fn include_and_includedir_sorted_by_name_only_cnf() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("conf.d");
        std::fs::create_dir(&d).unwrap();
        write(&d, "20-b.cnf", "[client]\nuser=b\n");
        write(&d, "10-a.cnf", "[client]\nuser=a\n");
        write(&d, "30-c.txt", "[client]\nuser=c\n");
        let inc = write(dir.path(), "inc.cnf", "[client]\nuser=inc\n");
        let main = write(
            dir.path(),
            "my.cnf",
            &format!(
                "[client]\nuser=main\n!includedir {}\n!include {}\n!include /nonexistent.cnf\n",
                d.display(),
                inc.display()
            ),
        );
        let (e, read) = read_all(&[main], &mut Vec::new()).unwrap();
        let users: Vec<_> = e.iter().map(|e| e.value.clone().unwrap()).collect();
        assert_eq!(users, ["main", "a", "b", "inc"]);
        assert_eq!(read.len(), 4);
    }

    #[test]
    fn include_recursion_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("loop.cnf");
        write(
            dir.path(),
            "loop.cnf",
            &format!("[client]\n!include {}\n", f.display()),
        );
        assert!(read_all(&[f], &mut Vec::new()).is_err());
    }

    #[test]
    fn world_writable_files_are_ignored_with_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        let f = write(dir.path(), "my.cnf", "[client]\nuser=x\n");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o666)).unwrap();
        let mut warnings = Vec::new();
        let (e, _) = read_all(&[f], &mut warnings).unwrap();
        assert!(e.is_empty());
        assert!(warnings[0].contains("World-writable"));
    }

    #[test]
    fn a_file_is_trusted_only_if_root_alone_could_have_written_it() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let f = write(dir.path(), "a.cnf", "[mysql-quiesce]\npre=x\n");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let check = |p: &Path| untrusted(p, &std::fs::File::open(p).unwrap());
        if nix::unistd::geteuid().is_root() {
            assert_eq!(check(&f), None);
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o664)).unwrap();
            assert!(check(&f).unwrap().contains("writable by group or others"));
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
            nix::unistd::chown(&f, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
            assert!(check(&f).unwrap().contains("belongs to uid 65534"));
            nix::unistd::chown(&f, Some(nix::unistd::Uid::from_raw(0)), None).unwrap();
            // Root's file in a directory someone else may write to can be replaced.
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
            assert!(check(&f).unwrap().contains("writable by group or others"));
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
            assert_eq!(check(&f), None, "a sticky directory protects root's file");
        } else {
            assert!(check(&f).unwrap().contains("not root"));
        }
    }

    #[test]
    fn search_order_global_home_env_extra_then_user_file() {
        let dir = tempfile::tempdir().unwrap();
        let extra = write(dir.path(), "extra.cnf", "");
        let roots = Roots {
            global: vec!["/g1".into(), "/g2".into()],
            home: Some("/home/u".into()),
            as_root: false,
        };
        let env = |k: &str| match k {
            "MYSQL_HOME" => Some("/mh".to_string()),
            _ => None,
        };
        let sel = Selection {
            defaults_extra_file: Some(extra.clone()),
            ..Default::default()
        };
        let order = search_order(&sel, &roots, &env).unwrap();
        let expect: Vec<PathBuf> = vec![
            "/g1".into(),
            "/g2".into(),
            "/mh/my.cnf".into(),
            extra,
            "/home/u/.my.cnf".into(),
        ];
        assert_eq!(order, expect);
        let mariadb_env = |k: &str| match k {
            "MARIADB_HOME" => Some("/mdb".to_string()),
            "MYSQL_HOME" => Some("/mh".to_string()),
            _ => None,
        };
        let order = search_order(&Selection::default(), &roots, &mariadb_env).unwrap();
        assert!(
            order.contains(&PathBuf::from("/mdb/my.cnf"))
                && !order.contains(&PathBuf::from("/mh/my.cnf"))
        );
        let none = Selection {
            no_defaults: true,
            ..Default::default()
        };
        assert!(search_order(&none, &roots, &env).unwrap().is_empty());
        let missing = Selection {
            defaults_file: Some("/nonexistent/x.cnf".into()),
            ..Default::default()
        };
        assert_eq!(
            exit::code_of(&search_order(&missing, &roots, &env).unwrap_err()),
            exit::CONFIG
        );
    }
}
