//! Option-file entries and environment variables become `--name=value`
//! arguments of the one clap definition, placed before the command line so
//! that later sources win, as in the mysql client: environment < option
//! files < command line ("values in option files take precedence over values
//! in environment variables", MySQL manual).
//!
//! Repeatable options (--pre, --freeze, ...) are lists: a list given on the
//! command line replaces the list from the files and environment instead of
//! being appended to it.

use super::files::Entry;
use super::password::PROMPT;
use crate::cli::DEFAULTS_OPTIONS;
use crate::exit;
use clap::ArgAction;

/// Groups every MySQL/MariaDB client reads; only connection options are taken from them.
pub const CLIENT_GROUPS: &[&str] = &["client", "client-server", "client-mariadb"];
/// Our own group: every long option.
pub const TOOL_GROUP: &str = "mysql-quiesce";
/// Connection options taken from the client groups.
const CONNECTION_KEYS: &[&str] = &[
    "host",
    "port",
    "user",
    "password",
    "socket",
    "protocol",
    "connect-timeout",
    "ssl-mode",
    "ssl-ca",
    "ssl-cert",
    "ssl-key",
];

/// One argument derived from a file or the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Derived {
    /// The clap argument id (long name with `_`), for list replacement.
    pub id: String,
    pub arg: String,
    /// "FILE:LINE" or "environment variable NAME".
    pub origin: String,
}

fn normalise(key: &str) -> String {
    key.trim().to_ascii_lowercase().replace('_', "-")
}

fn truthy(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "" | "1" | "true" | "on" | "yes" => Some(true),
        "0" | "false" | "off" | "no" => Some(false),
        _ => None,
    }
}

/// Turn the entries of our groups into arguments; `suffix` adds
/// [clientSUFFIX] and [mysql-quiesceSUFFIX]. Keys of the client groups that
/// are not connection options are listed in `notes` (they belong to other
/// programs); an unknown key in our group is an error (exit 78).
pub fn entries_to_args(
    entries: &[Entry],
    suffix: Option<&str>,
    as_root: bool,
    cmd: &clap::Command,
    notes: &mut Vec<String>,
) -> anyhow::Result<Vec<Derived>> {
    let groups = Groups::new(suffix);
    let mut out = Vec::new();
    for e in entries {
        let Some(is_client) = groups.is_client(&e.group) else {
            continue;
        };
        let Some(Spelled { key, value, loose }) = spelled(e, is_client, notes) else {
            continue;
        };
        if DEFAULTS_OPTIONS.contains(&key.as_str()) {
            return Err(exit::fail(
                exit::CONFIG,
                format!(
                    "{}: --{key} is a command-line option; it cannot be set in an option file",
                    e.origin
                ),
            ));
        }
        let (key, negated) = negation(cmd, key);
        let Some(arg) = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(key.as_str()))
        else {
            if loose {
                notes.push(format!(
                    "{}: loose-{key} is not a mysql-quiesce option; ignored",
                    e.origin
                ));
                continue;
            }
            return Err(exit::fail(
                exit::CONFIG,
                format!("{}: unknown option `{key}` in [{}]; see `mysql-quiesce --help` for the options", e.origin, e.group),
            ));
        };
        if as_root && !is_client {
            refuse_untrusted(e, &key)?;
        }
        add(&mut out, arg, e, &key, value, negated)?;
    }
    Ok(out)
}

/// The option-file groups we read.
struct Groups {
    client: Vec<String>,
    tool: Vec<String>,
}

impl Groups {
    fn new(suffix: Option<&str>) -> Groups {
        let with_suffix = |g: &str| suffix.map(|s| format!("{g}{s}"));
        let mut client: Vec<String> = CLIENT_GROUPS.iter().map(|g| g.to_string()).collect();
        client.extend(CLIENT_GROUPS.iter().filter_map(|g| with_suffix(g)));
        let mut tool = vec![TOOL_GROUP.to_string()];
        tool.extend(with_suffix(TOOL_GROUP));
        Groups { client, tool }
    }

    /// Some(true) for a client group, Some(false) for ours, None for others.
    fn is_client(&self, group: &String) -> Option<bool> {
        if self.client.contains(group) {
            Some(true)
        } else if self.tool.contains(group) {
            Some(false)
        } else {
            None
        }
    }
}

/// An entry's key as our option name.
struct Spelled {
    key: String,
    value: Option<String>,
    /// `loose-` prefixed: unknown is a note, not an error.
    loose: bool,
}

/// The key in our spelling: `loose-` off, and in client groups the
/// MySQL/MariaDB spellings of TLS settings mapped to --ssl-mode. None (with
/// a note) for a client-group key that belongs to other programs.
fn spelled(e: &Entry, is_client: bool, notes: &mut Vec<String>) -> Option<Spelled> {
    let key = normalise(&e.key);
    let (key, loose) = match key.strip_prefix("loose-") {
        Some(k) => (k.to_string(), true),
        None => (key, false),
    };
    if !is_client {
        return Some(Spelled {
            key,
            value: e.value.clone(),
            loose,
        });
    }
    let ssl_mode = match (key.as_str(), e.value.as_deref().map(truthy)) {
        ("ssl", None | Some(Some(true))) => Some("REQUIRED"),
        ("ssl", Some(Some(false))) | ("skip-ssl" | "disable-ssl", _) => Some("DISABLED"),
        ("ssl-verify-server-cert", None | Some(Some(true))) => Some("VERIFY_IDENTITY"),
        _ => None,
    };
    if let Some(mode) = ssl_mode {
        return Some(Spelled {
            key: "ssl-mode".into(),
            value: Some(mode.into()),
            loose,
        });
    }
    if !CONNECTION_KEYS.contains(&key.as_str()) {
        notes.push(format!(
            "{}: [{}] {key} is for other programs; mysql-quiesce ignores it",
            e.origin, e.group
        ));
        return None;
    }
    Some(Spelled {
        key,
        value: e.value.clone(),
        loose,
    })
}

/// skip-X / disable-X / enable-X for a switch X: (X, whether it is off).
fn negation(cmd: &clap::Command, key: String) -> (String, bool) {
    match ["skip-", "disable-", "enable-"]
        .iter()
        .find_map(|p| key.strip_prefix(p).map(|k| (*p, k)))
    {
        Some((prefix, k)) if is_flag(cmd, k) => (k.to_string(), prefix != "enable-"),
        _ => (key, false),
    }
}

/// As root, every mysql-quiesce key but the connection ones (which keep the
/// mysql client's rule) must come from a file only root could have written:
/// they run commands, choose what is frozen or written, or decide whether
/// and how long the database is locked (the pattern of CVE-2016-6662: a
/// config file turned into code execution as root).
fn refuse_untrusted(e: &Entry, key: &str) -> anyhow::Result<()> {
    if CONNECTION_KEYS.contains(&key) {
        return Ok(());
    }
    let Some(why) = &e.untrusted else {
        return Ok(());
    };
    Err(exit::fail(
        exit::CONFIG,
        format!(
            "{}: `{key}` is not taken from this file: mysql-quiesce runs as root, and {why}, so \
             someone other than root could make root run commands, write files or change the lock \
             with it. Nothing was done. Move the line to a file only root can write (owned by root, \
             not writable by group or others, in directories likewise), e.g. \
             /etc/mysql-quiesce/*.cnf, or give it on the command line",
            e.origin
        ),
    ))
}

/// The entry as arguments of `arg`, replacing earlier ones where the last wins.
fn add(
    out: &mut Vec<Derived>,
    arg: &clap::Arg,
    e: &Entry,
    key: &str,
    value: Option<String>,
    negated: bool,
) -> anyhow::Result<()> {
    let id = arg.get_id().to_string();
    let derived = |arg: String| Derived {
        id: id.clone(),
        arg,
        origin: e.origin.clone(),
    };
    match arg.get_action() {
        ArgAction::SetTrue | ArgAction::Count => {
            let counted = matches!(arg.get_action(), ArgAction::Count);
            let times = match value.as_deref() {
                None => 1,
                Some(v) => match (truthy(v), v.parse::<u8>()) {
                    (Some(b), _) => usize::from(b),
                    (None, Ok(n)) if counted => usize::from(n),
                    _ => {
                        return Err(exit::fail(
                            exit::CONFIG,
                            format!("{}: `{key}` is a switch; its value must be 1/0, true/false or on/off, not `{v}`", e.origin),
                        ))
                    }
                },
            };
            let times = if negated { 0 } else { times };
            // A later file turns a switch off or sets it again (last wins);
            // only a counted switch (-v) adds up.
            if times == 0 || !counted {
                out.retain(|d: &Derived| d.id != id);
            }
            out.extend((0..times).map(|_| derived(format!("--{key}"))));
        }
        _ => {
            let v = match value {
                Some(v) => v,
                None if key == "password" => PROMPT.to_string(),
                None => {
                    return Err(exit::fail(
                        exit::CONFIG,
                        format!("{}: `{key}` needs a value (`{key} = ...`)", e.origin),
                    ));
                }
            };
            out.push(derived(format!("--{key}={v}")));
        }
    }
    Ok(())
}

/// Take the MySQL-style switch negations off the command line:
/// `--skip-X` / `--disable-X` turn switch X off whatever the option files say
/// (returned as clap ids), `--enable-X` is `--X`. Stops at `--`.
pub fn command_line_negations(
    argv: Vec<std::ffi::OsString>,
    cmd: &clap::Command,
) -> (Vec<std::ffi::OsString>, Vec<String>) {
    let mut out = Vec::with_capacity(argv.len());
    let mut off = Vec::new();
    let mut rest = false;
    for a in argv {
        let text = a.to_str().unwrap_or("");
        if rest || text == "--" {
            rest = true;
            out.push(a);
            continue;
        }
        let negation = ["--skip-", "--disable-", "--enable-"]
            .iter()
            .find_map(|p| text.strip_prefix(p).map(|k| (*p, k)))
            .filter(|(_, k)| is_flag(cmd, k));
        match negation {
            Some(("--enable-", key)) => out.push(format!("--{key}").into()),
            Some((_, key)) => {
                if let Some(arg) = cmd.get_arguments().find(|a| a.get_long() == Some(key)) {
                    // The last of --X and --skip-X wins, as in the mysql client.
                    let long = format!("--{key}");
                    let short = arg.get_short().map(|c| format!("-{c}"));
                    out.retain(|o: &std::ffi::OsString| {
                        o.to_str()
                            .is_none_or(|t| t != long && Some(t) != short.as_deref())
                    });
                    off.push(arg.get_id().to_string());
                }
            }
            None => out.push(a),
        }
    }
    (out, off)
}

fn is_flag(cmd: &clap::Command, key: &str) -> bool {
    cmd.get_arguments()
        .find(|a| a.get_long() == Some(key))
        .is_some_and(|a| matches!(a.get_action(), ArgAction::SetTrue | ArgAction::Count))
}

/// MYSQL_HOST, MYSQL_TCP_PORT, MYSQL_UNIX_PORT, MYSQL_PWD as arguments.
pub fn environment_args(env: &dyn Fn(&str) -> Option<String>) -> Vec<Derived> {
    [
        ("MYSQL_HOST", "host"),
        ("MYSQL_TCP_PORT", "port"),
        ("MYSQL_UNIX_PORT", "socket"),
        ("MYSQL_PWD", "password"),
    ]
    .iter()
    .filter_map(|(var, key)| {
        env(var).filter(|v| !v.is_empty()).map(|v| Derived {
            id: key.to_string(),
            arg: format!("--{key}={v}"),
            origin: format!("environment variable {var}"),
        })
    })
    .collect()
}

/// Check each derived argument on its own, so that a bad value is reported
/// with its origin and exit 78 instead of as a usage error.
pub fn validate(derived: &[Derived], cmd: &clap::Command) -> anyhow::Result<()> {
    // One parse of them all, the usual case; one each only to name the
    // culprit of a failure. (They may fail only together: then the merged
    // parse reports it.)
    let all = std::iter::once("mysql-quiesce").chain(derived.iter().map(|d| d.arg.as_str()));
    if derived.is_empty() || cmd.clone().try_get_matches_from(all).is_ok() {
        return Ok(());
    }
    for d in derived {
        if let Err(e) = cmd
            .clone()
            .try_get_matches_from(["mysql-quiesce", d.arg.as_str()])
        {
            let msg = e.to_string();
            let first = msg
                .lines()
                .next()
                .unwrap_or("")
                .trim_start_matches("error: ")
                .to_string();
            return Err(exit::fail(exit::CONFIG, format!("{}: {first}", d.origin)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_of_a_switch_and_its_negation_on_the_command_line_wins() {
        let cmd = crate::cli::command();
        let argv = |a: &[&str]| -> Vec<std::ffi::OsString> { a.iter().map(Into::into).collect() };
        let (out, off) =
            command_line_negations(argv(&["mq", "--pre-flush", "--skip-pre-flush"]), &cmd);
        assert_eq!(out, argv(&["mq"]));
        assert_eq!(off, ["pre_flush"]);
        let (out, _) =
            command_line_negations(argv(&["mq", "--skip-pre-flush", "--pre-flush"]), &cmd);
        assert_eq!(out, argv(&["mq", "--pre-flush"]));
        let (out, _) =
            command_line_negations(argv(&["mq", "-q", "--skip-quiet", "--", "-q"]), &cmd);
        assert_eq!(out, argv(&["mq", "--", "-q"]));
    }

    fn entry(group: &str, key: &str, value: Option<&str>) -> Entry {
        Entry {
            group: group.into(),
            key: key.into(),
            value: value.map(str::to_string),
            origin: "f.cnf:1".into(),
            untrusted: None,
        }
    }

    fn args(entries: &[Entry]) -> anyhow::Result<Vec<String>> {
        let mut notes = Vec::new();
        entries_to_args(
            entries,
            Some("-prod"),
            false,
            &crate::cli::command(),
            &mut notes,
        )
        .map(|v| v.into_iter().map(|d| d.arg).collect())
    }

    #[test]
    fn client_groups_give_connection_options_only() {
        let e = [
            entry("client", "user", Some("bob")),
            entry("client-server", "socket", Some("/s")),
            entry("client", "default_character_set", Some("utf8")),
            entry("client", "skip-ssl", None),
            entry("mysql", "user", Some("ignored")),
            entry("client-prod", "port", Some("3307")),
        ];
        assert_eq!(
            args(&e).unwrap(),
            [
                "--user=bob",
                "--socket=/s",
                "--ssl-mode=DISABLED",
                "--port=3307"
            ]
        );
    }

    #[test]
    fn tool_group_sets_every_long_option_and_lists_repeat() {
        let e = [
            entry("mysql-quiesce", "pre", Some("a")),
            entry("mysql-quiesce", "pre", Some("b")),
            entry("mysql-quiesce", "lock_wait_timeout", Some("0.5")),
            entry("mysql-quiesce", "quiet", Some("off")),
            entry("mysql-quiesce", "force-freeze", None),
            entry("mysql-quiesce", "verbose", Some("2")),
            entry("mysql-quiesce-prod", "skip-pre-flush", None),
            entry("mysql-quiesce", "password", None),
        ];
        assert_eq!(
            args(&e).unwrap(),
            [
                "--pre=a",
                "--pre=b",
                "--lock-wait-timeout=0.5",
                "--force-freeze",
                "--verbose",
                "--verbose",
                &format!("--password={PROMPT}")
            ]
        );
    }

    #[test]
    fn a_later_file_turns_a_switch_off_and_counted_switches_add_up() {
        let e = [
            entry("mysql-quiesce", "pre-flush", None),
            entry("mysql-quiesce", "verbose", None),
            entry("mysql-quiesce", "skip-pre-flush", None),
            entry("mysql-quiesce", "verbose", None),
            entry("mysql-quiesce", "force-freeze", Some("1")),
            entry("mysql-quiesce", "force-freeze", Some("0")),
        ];
        assert_eq!(args(&e).unwrap(), ["--verbose", "--verbose"]);
    }

    #[test]
    fn command_line_skip_and_enable_forms_of_switches() {
        let argv: Vec<std::ffi::OsString> = [
            "mq",
            "--skip-pre-flush",
            "--enable-quiet",
            "--skip-nothing",
            "--",
            "--skip-x",
        ]
        .iter()
        .map(Into::into)
        .collect();
        let (argv, off) = command_line_negations(argv, &crate::cli::command());
        assert_eq!(argv, ["mq", "--quiet", "--skip-nothing", "--", "--skip-x"]);
        assert_eq!(off, ["pre_flush"]);
    }

    #[test]
    fn unknown_key_in_tool_group_is_78_with_origin_but_loose_is_a_note() {
        let err = args(&[entry("mysql-quiesce", "lock-retires", Some("3"))]).unwrap_err();
        assert_eq!(exit::code_of(&err), exit::CONFIG);
        assert!(err.to_string().contains("f.cnf:1") && err.to_string().contains("lock-retires"));
        assert!(
            args(&[entry("mysql-quiesce", "loose-lock-retires", Some("3"))])
                .unwrap()
                .is_empty()
        );
        assert!(args(&[entry("mysql-quiesce", "defaults-file", Some("/x"))]).is_err());
    }

    #[test]
    fn as_root_our_keys_from_a_file_others_could_write_are_refused_naming_file_and_key() {
        let mut pre = entry("mysql-quiesce", "pre", Some("touch /x"));
        pre.untrusted = Some("f.cnf belongs to uid 65534, not root".into());
        let run = |e: &Entry, as_root: bool| {
            let mut notes = Vec::new();
            entries_to_args(
                std::slice::from_ref(e),
                None,
                as_root,
                &crate::cli::command(),
                &mut notes,
            )
        };
        let err = run(&pre, true).unwrap_err();
        assert_eq!(exit::code_of(&err), exit::CONFIG);
        let msg = err.to_string();
        assert!(msg.starts_with("f.cnf:1: `pre` is not taken"), "{msg}");
        assert!(msg.contains("uid 65534"), "{msg}");
        // Not as root, or from a root-only file: taken.
        assert!(run(&pre, false).is_ok());
        pre.untrusted = None;
        assert!(run(&pre, true).is_ok());
        // Connection keys keep the mysql client's rule, in either group.
        for group in ["client", "mysql-quiesce"] {
            let mut user = entry(group, "user", Some("u"));
            user.untrusted = Some("x".into());
            assert!(run(&user, true).is_ok(), "{group}");
        }
        // Every other key of ours: what is run, frozen, written, locked, for how long.
        for (key, value) in [
            ("snapshot", Some("x")),
            ("freeze", Some("/v")),
            ("force-freeze", None),
            ("report", Some("/v")),
            ("lock", Some("none")),
            ("dry-run", None),
            ("max-lock-time", Some("100000")),
            ("hook-timeout", Some("100000")),
            ("kill-long-queries", Some("0.5")),
            ("instance", Some("/etc/x.cnf")),
        ] {
            let mut e = entry("mysql-quiesce", key, value);
            e.untrusted = Some("x".into());
            assert!(run(&e, true).is_err(), "{key} taken from an untrusted file");
        }
    }

    #[test]
    fn bad_values_are_reported_with_their_origin() {
        let d = vec![Derived {
            id: "port".into(),
            arg: "--port=abc".into(),
            origin: "f.cnf:7".into(),
        }];
        let err = validate(&d, &crate::cli::command()).unwrap_err();
        assert_eq!(exit::code_of(&err), exit::CONFIG);
        assert!(err.to_string().starts_with("f.cnf:7: "), "{err}");
    }

    #[test]
    fn environment_variables_map_to_connection_options() {
        let env = |k: &str| match k {
            "MYSQL_UNIX_PORT" => Some("/s".to_string()),
            "MYSQL_PWD" => Some("pw".to_string()),
            _ => None,
        };
        let a: Vec<String> = environment_args(&env).into_iter().map(|d| d.arg).collect();
        assert_eq!(a, ["--socket=/s", "--password=pw"]);
    }
}
