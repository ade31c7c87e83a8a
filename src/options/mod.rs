//! Where options come from: the command line, MySQL option files and the
//! environment, merged with the mysql client's precedence: command line >
//! option files > environment > built-in defaults.
//!
//! Option files are read the way MySQL/MariaDB client programs read them
//! (`files`); their entries become `--name=value` arguments of the one clap
//! definition in `cli` (`merge`), so every long option can be set in a file.

pub mod files;
pub mod merge;
pub mod password;

use crate::cli::{self, Cli, Protocol};
use crate::exit;
use clap::parser::ValueSource;
use clap::FromArgMatches;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The merged options, ready to run.
#[derive(Debug)]
pub struct Loaded {
    pub cli: Cli,
    /// Problems that did not stop us (e.g. world-writable option file ignored).
    pub warnings: Vec<String>,
    /// Shown with -v: files read, [client] keys ignored.
    pub notes: Vec<String>,
    /// Arguments from option files and environment (password masked), for --print-defaults.
    pub defaults_args: Vec<String>,
    /// Where the port came from, and whether the socket was typed on the
    /// command line: they decide the transport (see server::connect).
    pub port_origin: Option<String>,
    pub socket_on_command_line: bool,
}

impl Loaded {
    /// The connection options with their origins.
    pub fn connection_args(&self) -> crate::server::connect::ConnectionArgs {
        crate::server::connect::ConnectionArgs {
            port_origin: self.port_origin.clone(),
            socket_on_command_line: self.socket_on_command_line,
            ..self.cli.connection_args()
        }
    }
}

/// Options whose values are lists: the command line's list replaces the others'.
const LIST_OPTIONS: &[&str] = &[
    "before", "pre", "snapshot", "post", "after", "freeze", "instance",
];

/// Parse `argv` (including argv[0]), read option files and environment, merge,
/// prompt for the password if asked to, mask a command-line password in argv.
/// Errors carry exit codes (78 for option files and bad values); clap's own
/// errors (usage, --help, --version) are returned as `clap::Error`.
pub fn load(argv: Vec<OsString>) -> anyhow::Result<Loaded> {
    load_with(argv, &files::Roots::default(), &|k| std::env::var(k).ok())
}

/// `load` with injectable option-file roots and environment (for tests).
pub fn load_with(
    argv: Vec<OsString>,
    roots: &files::Roots,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<Loaded> {
    let argv = normalize_argv(argv);
    let cmd = cli::command();
    let (argv, switched_off) = merge::command_line_negations(argv, &cmd);
    // The command line alone first: usage errors, --help and --version are its own.
    let from_cli = cmd.clone().try_get_matches_from(&argv)?;
    let selection = files::Selection {
        no_defaults: from_cli.get_flag("no_defaults"),
        defaults_file: from_cli.get_one::<PathBuf>("defaults_file").cloned(),
        defaults_extra_file: from_cli.get_one::<PathBuf>("defaults_extra_file").cloned(),
        group_suffix: from_cli
            .get_one::<String>("defaults_group_suffix")
            .cloned()
            .or_else(|| env("MYSQL_GROUP_SUFFIX")),
    };
    let mut warnings = Vec::new();
    let mut notes = Vec::new();
    let search = files::search_order(&selection, roots, env)?;
    let (entries, read) = files::read_all(&search, &mut warnings)?;
    if !read.is_empty() {
        let list: Vec<String> = read.iter().map(|p| p.display().to_string()).collect();
        notes.push(format!("option files read: {}", list.join(", ")));
    }
    // The environment first: option files override it, as in the mysql client.
    let mut derived = merge::environment_args(env);
    derived.extend(merge::entries_to_args(
        &entries,
        selection.group_suffix.as_deref(),
        roots.as_root,
        &cmd,
        &mut notes,
    )?);
    merge::validate(&derived, &cmd)?;
    // --skip-X on the command line turns off a switch the files set.
    derived.retain(|d| !switched_off.contains(&d.id));
    // A list on the command line replaces the files' and environment's list.
    derived.retain(|d| {
        !(LIST_OPTIONS.contains(&d.id.as_str())
            && from_cli.value_source(&d.id) == Some(ValueSource::CommandLine))
    });
    let defaults_args: Vec<String> = derived
        .iter()
        .map(|d| {
            if d.id == "password" {
                "--password=*****".to_string()
            } else {
                d.arg.clone()
            }
        })
        .collect();

    let mut merged: Vec<OsString> = argv.iter().take(1).cloned().collect();
    merged.extend(derived.iter().map(|d| OsString::from(&d.arg)));
    merged.extend(argv.iter().skip(1).cloned());
    // Nothing derived: the command line's own parse is the whole of it.
    let matches = if derived.is_empty() {
        from_cli.clone()
    } else {
        cmd.try_get_matches_from(&merged).map_err(|e| {
            exit::fail(
                exit::CONFIG,
                format!("the options from option files and environment do not combine: {e}"),
            )
        })?
    };
    let mut cli = Cli::from_arg_matches(&matches)?;
    // Where the port came from decides the transport (see server::connect).
    let port_origin = if from_cli.value_source("port") == Some(ValueSource::CommandLine) {
        Some(crate::server::connect::PORT_FROM_COMMAND_LINE.to_string())
    } else {
        derived
            .iter()
            .rfind(|d| d.id == "port")
            .map(|d| d.origin.clone())
    };
    let socket_on_command_line = from_cli.value_source("socket") == Some(ValueSource::CommandLine);

    if from_cli.value_source("password") == Some(ValueSource::CommandLine)
        && from_cli.get_one::<String>("password").map(String::as_str) != Some(password::PROMPT)
    {
        password::mask_argv();
    }
    if cli.password.as_deref() == Some(password::PROMPT) {
        cli.password = Some(password::prompt()?);
    }
    Ok(Loaded {
        cli,
        warnings,
        notes,
        defaults_args,
        port_origin,
        socket_on_command_line,
    })
}

/// Rewrite the mysql-compatible short password form `-pSECRET` into
/// `--password=SECRET` (clap cannot express "value only when attached").
/// Stops at `--`.
pub fn normalize_argv(argv: Vec<OsString>) -> Vec<OsString> {
    let mut out = Vec::with_capacity(argv.len());
    let mut rest = false;
    for (i, a) in argv.into_iter().enumerate() {
        if i == 0 || rest {
            out.push(a);
            continue;
        }
        if a == "--" {
            rest = true;
            out.push(a);
            continue;
        }
        let bytes = a.as_encoded_bytes();
        if bytes.len() > 2 && bytes.starts_with(b"-p") {
            let mut long = OsString::from("--password=");
            // SAFETY-free: slicing an OsStr at an ASCII boundary is valid.
            long.push(OsString::from(
                String::from_utf8_lossy(&bytes[2..]).into_owned(),
            ));
            out.push(long);
        } else {
            out.push(a);
        }
    }
    out
}

/// Connection settings from one option file's client groups (for --instance).
#[derive(Debug, Default, Clone)]
pub struct ClientGroup {
    pub host: Option<String>,
    pub port: Option<u16>,
    /// "FILE:LINE" of the port, for messages.
    pub port_origin: Option<String>,
    pub socket: Option<PathBuf>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub protocol: Option<Protocol>,
}

/// Read the [client], [client-server] and [client-mariadb] groups of one
/// option file (with its includes). Errors are exit 78.
pub fn client_group(path: &Path) -> anyhow::Result<ClientGroup> {
    if !path.is_file() {
        return Err(exit::fail(
            exit::CONFIG,
            format!("{}: no such option file", path.display()),
        ));
    }
    let mut warnings = Vec::new();
    let (entries, _) = files::read_all(&[path.to_path_buf()], &mut warnings)?;
    if let Some(w) = warnings.into_iter().next() {
        return Err(exit::fail(exit::CONFIG, w));
    }
    let mut g = ClientGroup::default();
    for e in entries
        .iter()
        .filter(|e| merge::CLIENT_GROUPS.contains(&e.group.as_str()))
    {
        let v = e.value.clone();
        let bad = |what: &str| exit::fail(exit::CONFIG, format!("{}: {what}", e.origin));
        match e.key.to_ascii_lowercase().replace('_', "-").as_str() {
            "host" => g.host = v,
            "port" => {
                g.port_origin = Some(e.origin.clone());
                g.port = Some(
                    v.as_deref()
                        .unwrap_or("")
                        .parse()
                        .map_err(|_| bad("port must be a number"))?,
                )
            }
            "socket" => g.socket = v.map(PathBuf::from),
            "user" => g.user = v,
            "password" => {
                g.password =
                    Some(v.ok_or_else(|| {
                        bad("a bare password line cannot prompt for an --instance")
                    })?)
            }
            "protocol" => {
                g.protocol = match v.as_deref().map(str::to_ascii_uppercase).as_deref() {
                    Some("TCP") => Some(Protocol::Tcp),
                    Some("SOCKET") => Some(Protocol::Socket),
                    _ => return Err(bad("protocol must be TCP or SOCKET")),
                }
            }
            _ => {}
        }
    }
    Ok(g)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn short_password_form_is_rewritten_only_before_double_dash() {
        let out = normalize_argv(os(&["mq", "-pSecret", "-p", "-P3306", "--", "-pkeep"]));
        assert_eq!(
            out,
            os(&["mq", "--password=Secret", "-p", "-P3306", "--", "-pkeep"])
        );
    }

    struct Fixture {
        dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new(global: &str, user: &str) -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            for (name, text) in [("global.cnf", global), ("home/.my.cnf", user)] {
                let p = dir.path().join(name);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(&p, text).unwrap();
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
            }
            Fixture { dir }
        }

        fn roots(&self) -> files::Roots {
            files::Roots {
                global: vec![self.dir.path().join("global.cnf")],
                home: Some(self.dir.path().join("home")),
                as_root: false,
            }
        }

        fn load(&self, args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Loaded> {
            let env: Vec<(String, String)> = env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let lookup = move |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            let mut argv = vec!["mysql-quiesce"];
            argv.extend_from_slice(args);
            load_with(os(&argv), &self.roots(), &lookup)
        }
    }

    #[test]
    fn later_files_override_earlier_and_the_environment_and_the_command_line_overrides_all() {
        let f = Fixture::new(
            "[client]\nsocket=/global\nuser=g\n",
            "[client]\nsocket=/user\n",
        );
        let l = f.load(&[], &[]).unwrap();
        assert_eq!(l.cli.socket.as_deref(), Some(Path::new("/user")));
        assert_eq!(l.cli.user.as_deref(), Some("g"));
        // Option files beat the environment (the mysql client's rule) ...
        let l = f.load(&[], &[("MYSQL_UNIX_PORT", "/env")]).unwrap();
        assert_eq!(l.cli.socket.as_deref(), Some(Path::new("/user")));
        // ... which is used where no file says anything.
        let l = f
            .load(&["--no-defaults"], &[("MYSQL_UNIX_PORT", "/env")])
            .unwrap();
        assert_eq!(l.cli.socket.as_deref(), Some(Path::new("/env")));
        let l = f
            .load(&["-S", "/cli"], &[("MYSQL_UNIX_PORT", "/env")])
            .unwrap();
        assert_eq!(l.cli.socket.as_deref(), Some(Path::new("/cli")));
        let l = f.load(&["--no-defaults"], &[]).unwrap();
        assert_eq!(l.cli.socket, None);
    }

    #[test]
    fn command_line_list_replaces_the_files_list() {
        let f = Fixture::new("[mysql-quiesce]\npre=a\npre=b\npost=p\n", "");
        let l = f.load(&[], &[]).unwrap();
        assert_eq!(l.cli.pre, ["a", "b"]);
        let l = f.load(&["--pre", "c"], &[]).unwrap();
        assert_eq!(l.cli.pre, ["c"]);
        assert_eq!(l.cli.post, ["p"]);
    }

    #[test]
    fn group_suffix_reads_the_suffixed_groups_too() {
        let f = Fixture::new(
            "[client]\nuser=a\n[client_prod]\nuser=b\n[mysql-quiesce_prod]\nlock-retries=2\n",
            "",
        );
        let l = f.load(&["--defaults-group-suffix=_prod"], &[]).unwrap();
        assert_eq!((l.cli.user.as_deref(), l.cli.lock_retries), (Some("b"), 2));
        let l = f.load(&[], &[("MYSQL_GROUP_SUFFIX", "_prod")]).unwrap();
        assert_eq!(l.cli.user.as_deref(), Some("b"));
    }

    #[test]
    fn a_switch_set_in_a_file_is_turned_off_by_skip_on_the_command_line() {
        let f = Fixture::new(
            "[mysql-quiesce]\npre-flush\n",
            "[mysql-quiesce]\nforce-freeze\n",
        );
        let l = f.load(&[], &[]).unwrap();
        assert!(l.cli.pre_flush && l.cli.force_freeze);
        let l = f
            .load(&["--skip-pre-flush", "--disable-force-freeze"], &[])
            .unwrap();
        assert!(!l.cli.pre_flush && !l.cli.force_freeze);
    }

    #[test]
    fn group_suffix_covers_the_mariadb_client_groups() {
        let f = Fixture::new(
            "[client-server_b]\nuser=cs\n[client-mariadb_b]\nsocket=/m\n",
            "",
        );
        let l = f.load(&["--defaults-group-suffix=_b"], &[]).unwrap();
        assert_eq!(l.cli.user.as_deref(), Some("cs"));
        assert_eq!(l.cli.socket.as_deref(), Some(Path::new("/m")));
    }

    #[test]
    fn host_port_and_password_from_a_file_beat_the_environment_which_fills_in_the_rest() {
        let f = Fixture::new("[client]\nhost=filehost\nport=3310\npassword=filepw\n", "");
        let env = [
            ("MYSQL_HOST", "envhost"),
            ("MYSQL_TCP_PORT", "3311"),
            ("MYSQL_PWD", "envpw"),
        ];
        let l = f.load(&[], &env).unwrap();
        assert_eq!(l.cli.host.as_deref(), Some("filehost"));
        assert_eq!(l.cli.port, Some(3310));
        assert_eq!(l.cli.password.as_deref(), Some("filepw"));
        assert!(l.port_origin.as_deref().unwrap().ends_with("global.cnf:3"));
        let l = f.load(&["--no-defaults"], &env).unwrap();
        assert_eq!(l.cli.host.as_deref(), Some("envhost"));
        assert_eq!(l.cli.password.as_deref(), Some("envpw"));
        assert_eq!(
            l.port_origin.as_deref(),
            Some("environment variable MYSQL_TCP_PORT")
        );
        let l = f.load(&["-P3312"], &env).unwrap();
        assert_eq!(l.cli.port, Some(3312));
        assert_eq!(l.port_origin.as_deref(), Some("the command line"));
    }

    #[test]
    fn bad_value_in_a_file_is_78_naming_file_and_line() {
        let f = Fixture::new("[client]\nport = abc\n", "");
        let err = f.load(&[], &[]).unwrap_err();
        assert_eq!(exit::code_of(&err), exit::CONFIG);
        assert!(err.to_string().contains("global.cnf:2"), "{err}");
    }

    #[test]
    fn print_defaults_masks_the_password() {
        let f = Fixture::new("[client]\npassword=hunter2\nuser=u\n", "");
        let l = f.load(&[], &[]).unwrap();
        assert_eq!(l.cli.password.as_deref(), Some("hunter2"));
        assert_eq!(l.defaults_args, ["--password=*****", "--user=u"]);
    }

    #[test]
    fn usage_errors_are_clap_errors() {
        let f = Fixture::new("", "");
        let err = f.load(&["--no-such-option"], &[]).unwrap_err();
        assert!(err.downcast_ref::<clap::Error>().is_some());
    }

    #[test]
    fn instance_option_file_gives_its_client_group() {
        let f = Fixture::new(
            "[client]\nsocket=/s2\nuser=backup\npassword=\"p w\"\n[mysqld]\nport=1\n",
            "",
        );
        let g = client_group(&f.dir.path().join("global.cnf")).unwrap();
        assert_eq!(g.socket.as_deref(), Some(Path::new("/s2")));
        assert_eq!(
            (g.user.as_deref(), g.password.as_deref(), g.port),
            (Some("backup"), Some("p w"), None)
        );
    }
}
