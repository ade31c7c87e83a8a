//! What the program is asked to do, decided in one place (`Mode::of`), and
//! the entry point that does it: load the options, build the plan the mode
//! needs, hand it to the part that does the work.

use crate::cli::{Cli, Generated, Sub};
use crate::exit;
use crate::holder;
use crate::messages::Progress;
use crate::options::{self, Loaded};
use crate::plan::{self, Plan, Purpose};
use crate::run::{Real, Run};
use crate::signals;
use std::ffi::OsString;
use std::path::PathBuf;

/// Everything the binary can be asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// The hidden `__guardian` process (see `guardian`).
    Guardian {
        dirs: Vec<String>,
        mountpoints: Vec<PathBuf>,
    },
    /// `generate man|bash|zsh|fish`.
    Generate(Generated),
    /// --print-defaults.
    PrintDefaults,
    /// --dry-run: the plan, nothing touched.
    DryRun,
    /// --check: connect and check, nothing locked or frozen.
    Check,
    /// The ordinary run.
    Run,
    /// `lock`: start a holder, return once it holds.
    Lock { json: bool },
    /// The holder process a `lock` started (MYSQL_QUIESCE_HOLDER_FD set).
    Holder,
    /// `hold`: hold in the foreground until stdin reaches EOF.
    Hold,
    /// `unlock`.
    Unlock,
    /// `status`.
    Status { json: bool },
    /// `verify`: a snapshot, not a server (dispatched before option
    /// loading, like the guardian: see `main_entry`).
    Verify,
}

impl Mode {
    /// The mode the command line asks for. The holder is a `lock` started
    /// with the descriptor of its `lock` command in its environment.
    pub fn of(cli: &Cli, holder_fd_set: bool) -> Mode {
        match &cli.subcommand {
            Some(Sub::Generate { what }) => Mode::Generate(*what),
            Some(Sub::Unlock) => Mode::Unlock,
            Some(Sub::Status { json }) => Mode::Status { json: *json },
            Some(Sub::Verify(_)) => Mode::Verify,
            _ if cli.print_defaults => Mode::PrintDefaults,
            _ if cli.dry_run => Mode::DryRun,
            _ if cli.check => Mode::Check,
            Some(Sub::Lock { .. }) if holder_fd_set => Mode::Holder,
            Some(Sub::Lock { json }) => Mode::Lock { json: *json },
            Some(Sub::Hold) => Mode::Hold,
            None => Mode::Run,
        }
    }

    /// The guardian's own command line (`__guardian [--dir=DEV:INO]...
    /// MOUNTPOINT...`), read without clap: it is started on every run and
    /// building the whole command definition would delay it. None when
    /// `argv` is not the guardian's; Err when it is, but malformed (our own
    /// binary never writes such a line).
    pub fn guardian(argv: &[OsString]) -> Option<Result<Mode, ()>> {
        if argv.get(1).is_none_or(|a| a != crate::guardian::ARGUMENT) {
            return None;
        }
        let (mut dirs, mut mountpoints) = (Vec::new(), Vec::new());
        for arg in &argv[2..] {
            match arg.to_str() {
                Some(a) if a.starts_with("--dir=") => {
                    let dir = &a["--dir=".len()..];
                    let numbers = dir.split_once(':').is_some_and(|(dev, ino)| {
                        dev.parse::<u64>().is_ok() && ino.parse::<u64>().is_ok()
                    });
                    if !numbers {
                        return Some(Err(()));
                    }
                    dirs.push(dir.to_string());
                }
                // Mount points are absolute paths (validated by the run).
                _ if arg.as_encoded_bytes().starts_with(b"/") => {
                    mountpoints.push(PathBuf::from(arg))
                }
                _ => return Some(Err(())),
            }
        }
        Some(Ok(Mode::Guardian { dirs, mountpoints }))
    }
}

/// Process entry: the exit status.
pub fn main_entry() -> u8 {
    let argv: Vec<OsString> = std::env::args_os().collect();
    // Kept before option loading masks the password in our argv: `lock` passes it on.
    let original_argv = argv.clone();
    // The guardian must not read option files or prompt: parsed directly.
    match Mode::guardian(&argv) {
        Some(Ok(Mode::Guardian { dirs, mountpoints })) => {
            return crate::guardian::main(&mountpoints, &dirs).clamp(0, 255) as u8
        }
        Some(_) => {
            eprintln!(
                "mysql-quiesce: error: `{}` is internal: a run starts it with a command line of its own, and \
                 this one ({}) is not one",
                crate::guardian::ARGUMENT,
                argv.iter().skip(2).map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ")
            );
            return exit::USAGE;
        }
        None => {}
    }
    // verify starts its own server on a snapshot: no option files, no connection.
    if let Some(code) = crate::verify::entry(&argv) {
        return code;
    }
    // Overlaps option loading; wasted (on a spare core) by the modes that never
    // connect. Not in the holder: it edits its environment while it starts,
    // which must not race another thread.
    if std::env::var_os(holder::HOLDER_FD).is_none() {
        crate::server::prepare_in_background();
    }
    let mut loaded = match options::load(argv) {
        Ok(loaded) => loaded,
        Err(e) => return load_error(e, &original_argv),
    };
    let holder_fd_set = std::env::var_os(holder::HOLDER_FD).is_some();
    let mode = Mode::of(&loaded.cli, holder_fd_set);
    if mode == Mode::Holder {
        match holder::inherited_password() {
            Ok(Some(pw)) => loaded.cli.password = Some(pw),
            Ok(None) => {}
            Err(e) => {
                eprintln!("mysql-quiesce: error: {e:#}");
                return exit::code_of(&e);
            }
        }
    }
    let progress = Progress {
        quiet: loaded.cli.quiet,
        verbose: loaded.cli.verbose,
    };
    for w in &loaded.warnings {
        progress.warn(w);
    }
    for n in &loaded.notes {
        progress.detail(n);
    }
    run_mode(mode, &loaded, &original_argv, &progress)
}

/// Do what `mode` asks; the exit status.
fn run_mode(mode: Mode, loaded: &Loaded, argv: &[OsString], progress: &Progress) -> u8 {
    let state_dir = loaded.cli.state_dir();
    match mode {
        // Both run before option loading; here only if their arguments did not parse.
        Mode::Guardian { .. } => return exit::USAGE,
        Mode::Verify => {
            progress.error(
                "this verify command line could not be read (verify takes only --quiet, --verbose and \
                 --no-defaults before it, and its own options after it): see mysql-quiesce verify --help",
            );
            return exit::USAGE;
        }
        Mode::Generate(what) => return crate::generate::print(what),
        Mode::Unlock => return holder::unlock_command(&state_dir, progress),
        Mode::Status { json } => return holder::status_command(&state_dir, json, progress),
        Mode::PrintDefaults => {
            crate::outln!("{}", loaded.defaults_args.join("\n"));
            return exit::OK;
        }
        _ => {}
    }
    if let Err(e) = signals::install() {
        progress.error(format!("{e:#}"));
        return exit::SOFTWARE;
    }
    let purpose = match mode {
        Mode::DryRun | Mode::Check => Purpose::Preview,
        Mode::Holder => Purpose::Holder,
        _ => Purpose::Run,
    };
    let plan = match Plan::build(loaded, purpose) {
        Ok(p) => p,
        Err(e) => {
            progress.error(format!("{e:#}"));
            return exit::code_of(&e);
        }
    };
    match mode {
        Mode::DryRun => {
            crate::messages::stdout(&plan::describe(&plan));
            exit::OK
        }
        Mode::Check => plan::check(&plan),
        Mode::Lock { json } => holder::lock_command(&plan, argv, json),
        Mode::Holder => match holder::HolderWaiter::from_environment(&plan) {
            Ok(mut waiter) => {
                let mut backend = Real::new(&plan);
                Run::new(&plan, &mut backend)
                    .with_waiter(&mut waiter)
                    .execute()
            }
            Err(e) => {
                progress.error(format!("{e:#}"));
                exit::code_of(&e)
            }
        },
        Mode::Hold => match holder::StdinWaiter::check_stdin() {
            Ok(()) => {
                let mut backend = Real::new(&plan);
                Run::new(&plan, &mut backend)
                    .with_waiter(&mut holder::StdinWaiter)
                    .execute()
            }
            Err(e) => {
                progress.error(format!("{e:#}"));
                exit::code_of(&e)
            }
        },
        _ => {
            let mut backend = Real::new(&plan);
            Run::new(&plan, &mut backend).execute()
        }
    }
}

fn load_error(e: anyhow::Error, argv: &[OsString]) -> u8 {
    if let Some(clap_err) = e.downcast_ref::<clap::Error>() {
        if matches!(
            clap_err.kind(),
            clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
        ) {
            let _ = clap_err.print();
            return exit::OK;
        }
        // `-p SECRET` (a space: SECRET is not the password but a stray
        // argument, as in the mysql client) must not print SECRET.
        eprint!(
            "{}",
            mask_stray_password(&clap_err.render().to_string(), argv)
        );
        return exit::USAGE;
    }
    eprintln!("mysql-quiesce: error: {e:#}");
    exit::code_of(&e)
}

/// `text` with the argument that follows a bare `-p`/`--password` replaced by
/// `*****`: typed with a space, a password would otherwise be repeated in
/// the usage error.
fn mask_stray_password(text: &str, argv: &[OsString]) -> String {
    let mut out = text.to_string();
    for pair in argv.windows(2) {
        let (flag, next) = (pair[0].to_string_lossy(), pair[1].to_string_lossy());
        if flag == "--" {
            break;
        }
        if (flag == "-p" || flag == "--password") && !next.starts_with('-') && !next.is_empty() {
            out = out.replace(next.as_ref(), "*****");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn mode(args: &[&str], holder: bool) -> Mode {
        let cli = Cli::try_parse_from(std::iter::once("mysql-quiesce").chain(args.iter().copied()))
            .unwrap();
        Mode::of(&cli, holder)
    }

    #[test]
    fn each_request_maps_to_one_mode() {
        assert_eq!(mode(&[], false), Mode::Run);
        assert_eq!(mode(&["--dry-run"], false), Mode::DryRun);
        assert_eq!(mode(&["--check"], false), Mode::Check);
        assert_eq!(mode(&["--print-defaults"], false), Mode::PrintDefaults);
        assert_eq!(mode(&["lock"], false), Mode::Lock { json: false });
        assert_eq!(mode(&["lock"], true), Mode::Holder);
        assert_eq!(mode(&["lock", "--dry-run"], false), Mode::DryRun);
        assert_eq!(mode(&["hold"], false), Mode::Hold);
        assert_eq!(mode(&["unlock"], false), Mode::Unlock);
        assert_eq!(
            mode(&["status", "--json"], false),
            Mode::Status { json: true }
        );
    }

    #[test]
    fn the_guardian_command_line_is_read_without_clap() {
        let argv = |args: &[&str]| -> Vec<OsString> { args.iter().map(Into::into).collect() };
        assert_eq!(
            Mode::guardian(&argv(&["mq-guardian", "__guardian", "--dir=1:2", "/m"])),
            Some(Ok(Mode::Guardian {
                dirs: vec!["1:2".into()],
                mountpoints: vec!["/m".into()]
            }))
        );
        assert_eq!(Mode::guardian(&argv(&["mq", "--dry-run"])), None);
        assert_eq!(
            Mode::guardian(&argv(&["mq", "__guardian", "relative"])),
            Some(Err(()))
        );
        assert_eq!(
            Mode::guardian(&argv(&["mq", "__guardian", "--other"])),
            Some(Err(()))
        );
    }

    #[test]
    fn a_password_after_a_bare_p_is_masked_in_a_usage_error() {
        let argv: Vec<OsString> = ["mq", "-p", "s3cret", "--", "-p", "x"]
            .iter()
            .map(Into::into)
            .collect();
        assert_eq!(
            mask_stray_password("unexpected argument 's3cret' and x", &argv),
            "unexpected argument '*****' and x"
        );
    }
}
