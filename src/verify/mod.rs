//! `mysql-quiesce verify`: prove that a snapshot restores.
//!
//! `Verify::execute` reads top to bottom: identify the data (`datadir`),
//! refuse a snapshot whose tables live partly outside it (`external`),
//! read the recorded coordinates (`coordinates`), pick the server
//! (`server`), read the snapshot's binary log (`binlog`), make a writable
//! view that never writes to the snapshot (`overlay`), start the server
//! where it can write nothing but that view (`confine`) for
//! crash recovery and read the restore point it holds, compare, restart it
//! InnoDB read-only to CHECK TABLE everything (`tables`), stop, unmount and
//! remove. Every resource is a guard whose Drop releases it (`Server` kills,
//! `Overlay` unmounts, `WorkDir` removes), so an early return, a signal or a
//! crashed server leaves nothing running or mounted; the mounts also live
//! in a mount namespace of verify's own, which ends with it. (A verify
//! killed outright leaves its work directory and a --copy-to copy on disk.)

pub mod args;
pub mod binlog;
pub mod confine;
pub mod coordinates;
pub mod datadir;
pub mod errorlog;
pub mod external;
pub mod overlay;
pub mod report;
pub mod server;
pub mod statements;
pub mod tables;
pub mod watch;

pub use args::{Args, CheckTables};

use crate::exit;
use crate::messages::Progress;
use crate::report::{human, ms, rfc3339, write_atomic};
use anyhow::Context;
use clap::parser::ValueSource;
use clap::FromArgMatches;
use coordinates::{Point, Recorded, Verdict};
use datadir::Family;
use mysql::prelude::Queryable;
use overlay::{Overlay, WorkDir};
use report::{BinlogRecord, ServerView, VerifyReport};
use server::{Launch, Phase, Server, Stop};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// Options of the main command that verify accepts (it reads no option
/// files and connects to nothing, so the rest would be silently ignored).
const ACCEPTED_GLOBALS: &[&str] = &["quiet", "verbose", "help", "no_defaults"];

/// `mysql-quiesce verify ...`: run it and return the exit status; None when
/// `argv` is not a verify command line (or not a valid one: the ordinary
/// option handling then reports the usage error).
pub fn entry(argv: &[OsString]) -> Option<u8> {
    // Every run comes through here: no command definition built unless the
    // word is there at all (before a `--`: after it, it is COMMAND's).
    if !argv
        .iter()
        .skip(1)
        .take_while(|a| *a != "--")
        .any(|a| a == "verify")
    {
        return None;
    }
    // The command line as the ordinary path reads it (-pSECRET, --skip-X,
    // --enable-X), so that a spelling it accepts is not a silent failure here.
    let cmd = crate::cli::command();
    let (argv, switched_off) = crate::options::merge::command_line_negations(
        crate::options::normalize_argv(argv.to_vec()),
        &cmd,
    );
    let matches = cmd.clone().try_get_matches_from(&argv).ok()?;
    let ("verify", sub) = matches.subcommand()? else {
        return None;
    };
    let args = Args::from_arg_matches(sub).ok()?;
    let not_taken =
        |id: &str| !ACCEPTED_GLOBALS.contains(&id) && !["report", "coordinates_file"].contains(&id);
    let mut typed: Vec<String> = cmd
        .get_arguments()
        .filter(|a| a.is_global_set())
        .filter(|a| not_taken(a.get_id().as_str()))
        .filter(|a| matches.value_source(a.get_id().as_str()) == Some(ValueSource::CommandLine))
        .map(|a| format!("--{}", a.get_long().unwrap_or(a.get_id().as_str())))
        .collect();
    typed.extend(
        switched_off
            .iter()
            .filter(|id| not_taken(id))
            .map(|id| format!("--skip-{}", id.replace('_', "-"))),
    );
    if !typed.is_empty() {
        eprintln!(
            "mysql-quiesce: error: verify does not take {}: it starts its own server on the snapshot and reads no \
             option files (see mysql-quiesce verify --help)",
            typed.join(", ")
        );
        return Some(exit::USAGE);
    }
    let progress = Progress {
        quiet: matches.get_flag("quiet"),
        verbose: matches.get_count("verbose"),
    };
    Some(run(&args, progress))
}

/// Run verify with `args`; returns the exit status.
pub fn run(args: &Args, progress: Progress) -> u8 {
    if let Err(e) = crate::signals::install() {
        progress.error(format!("{e:#}"));
        return exit::SOFTWARE;
    }
    let mut v = Verify {
        args,
        progress,
        report: VerifyReport::new(&args.datadir, rfc3339(SystemTime::now())),
        failure: None,
        started: Instant::now(),
        timeout: Duration::ZERO,
        confinement_checked: false,
    };
    if let Err(e) = v.execute() {
        v.fail(exit::code_of(&e), format!("{e:#}"));
    }
    v.finish()
}

struct Verify<'a> {
    args: &'a Args,
    progress: Progress,
    report: VerifyReport,
    /// The exit status and message that decide the outcome.
    failure: Option<(u8, String)>,
    started: Instant,
    timeout: Duration,
    /// The server's confinement was checked (once is enough).
    confinement_checked: bool,
}

/// What the recovery start found.
struct Recovery {
    point: Point,
    view: ServerView,
}

impl Verify<'_> {
    /// Remember a failure. The first decides, except that "not what was
    /// recorded" (65) beats a later failure to start or check, and a signal
    /// beats everything.
    fn fail(&mut self, code: u8, message: String) {
        self.progress.error(&message);
        let replaces = match &self.failure {
            None => true,
            Some((first, _)) => {
                code > 128 && *first <= 128
                    || (code == exit::INCONSISTENT && *first != exit::INCONSISTENT && *first <= 128)
            }
        };
        if replaces {
            self.failure = Some((code, message));
        }
    }

    fn warn(&mut self, message: String) {
        self.progress.warn(&message);
        self.report.warnings.push(message);
    }

    /// Warn when the server can write outside its view of the snapshot and
    /// its run directory (see `confine`).
    fn check_confinement(&mut self, launch: &Launch, pid: u32) {
        if std::mem::replace(&mut self.confinement_checked, true) {
            return;
        }
        match launch.confinement() {
            None => self.warn(
                "not running as root: the server cannot be confined to its view of the snapshot and its run \
                 directory, and can write whatever this user can"
                    .into(),
            ),
            Some(c) => {
                let open = c.check(pid);
                if open.is_empty() {
                    self.progress.detail(
                        "the server runs in a mount namespace of its own where everything but its view of the \
                         snapshot and its run directory is read-only",
                    );
                } else {
                    let list: Vec<String> = open.iter().map(|p| p.display().to_string()).collect();
                    self.warn(format!(
                        "these mounts stayed writable for the server (it could not be confined to its view of the \
                         snapshot and its run directory there): {}",
                        list.join(", ")
                    ));
                }
            }
        }
    }

    fn deadline(&self) -> Instant {
        Instant::now() + self.timeout
    }

    /// Between steps: a termination signal ends verify here (waits notice
    /// one by themselves; a clean shutdown runs to its end first).
    fn interrupted(&self) -> anyhow::Result<()> {
        match crate::signals::received() {
            Some(sig) => Err(exit::fail(
                exit::signal(sig),
                format!("received signal {sig}; stopping and removing everything"),
            )),
            None => Ok(()),
        }
    }

    fn execute(&mut self) -> anyhow::Result<()> {
        let args = self.args;
        if !(args.timeout > 0.0 && args.timeout.is_finite() && args.timeout < 1e9) {
            return Err(exit::fail(
                exit::CONFIG,
                format!(
                    "--timeout must be a positive number of seconds, not {}",
                    args.timeout
                ),
            ));
        }
        self.timeout = Duration::from_secs_f64(args.timeout);

        // What the snapshot holds, read from its files (nothing runs yet).
        let data = datadir::detect(&args.datadir)?;
        if let Some((pid, name)) = datadir::servers_using(&data.path).into_iter().next() {
            return Err(exit::fail(
                exit::CONFIG,
                format!(
                    "{} is the data directory of a running process ({name}, pid {pid}): verify a snapshot of it, \
                     never the live directory",
                    data.path.display()
                ),
            ));
        }
        self.report.data = Some(data.clone());
        let binlog_dir = match &args.binlog_dir {
            Some(d) => d.canonicalize().map_err(|e| {
                exit::fail(exit::CONFIG, format!("--binlog-dir {}: {e}", d.display()))
            })?,
            None => data.path.clone(),
        };
        self.report.binlog_dir = Some(binlog_dir.display().to_string());
        // Tables whose files live elsewhere: the server would write the
        // live files and check data the snapshot does not hold.
        let mut outside = vec![(
            data.path.as_path(),
            "in the data directory",
            external::scan(&data.path, true)?,
        )];
        if !binlog_dir.starts_with(&data.path) {
            outside.push((
                binlog_dir.as_path(),
                "in the binary log directory",
                external::scan(&binlog_dir, false)?,
            ));
        }
        if let Some(e) = external::refusal(&outside, false) {
            return Err(e);
        }
        let recorded: Option<Recorded> = match &args.coordinates_file {
            Some(path) => {
                let (r, raw) = coordinates::read(path)?;
                self.report.recorded = Some(raw);
                Some(r)
            }
            None => None,
        };
        let binary = server::find(args.server.as_deref(), &data)?;
        self.report.server = Some(binary.clone());
        if let Some((a, b, _)) = data.version {
            if (binary.version.0, binary.version.1) != (a, b) {
                self.warn(format!(
                    "the data was last written by {} and is verified with {}: this shows that it restores with that \
                     server (which may upgrade the copy, never the snapshot)",
                    data.describe(),
                    binary.describe()
                ));
            }
        }
        self.progress.info(format!(
            "{}: {} data ({}); server {}",
            data.path.display(),
            data.describe(),
            if data.version_source.is_empty() {
                "version unknown".into()
            } else {
                format!("from {}", data.version_source)
            },
            binary.describe()
        ));

        let (binlogs, mut relays) = binlog::find(&binlog_dir)?;
        if binlog_dir != data.path {
            relays.extend(binlog::find(&data.path)?.1);
        }
        let series = self.choose_series(binlogs, &binlog_dir, recorded.as_ref())?;
        let scan = match &series {
            Some(s) => Some(self.scan_last(s)?),
            None => None,
        };

        // The writable view: an overlay in a private mount namespace, or a copy.
        self.interrupted()?;
        let work = WorkDir::create(&args.work_dir)?;
        let run_dir = work.path().join("run");
        std::fs::create_dir_all(&run_dir)
            .with_context(|| format!("creating {}", run_dir.display()))?;
        let socket_len = run_dir.join("sock").as_os_str().len();
        if socket_len > 100 {
            return Err(exit::fail(
                exit::CONFIG,
                format!(
                    "the server's socket would be {} ({socket_len} bytes; a Unix socket path must stay under \
                     ~100): use a shorter --work-dir",
                    run_dir.join("sock").display()
                ),
            ));
        }
        let binlog_inside = binlog_dir
            .strip_prefix(&data.path)
            .ok()
            .map(Path::to_path_buf);
        let mut overlays: Vec<Overlay> = Vec::new();
        let mut copy: Option<WorkDir> = None;
        let (data_view, binlog_view) = match &args.copy_to {
            Some(dest) => {
                self.report.method = Some("copy".into());
                let c = WorkDir::create(dest)?;
                let data_copy = c.path().join("data");
                let t0 = Instant::now();
                self.progress.info(format!(
                    "copying {} to {}",
                    data.path.display(),
                    data_copy.display()
                ));
                overlay::copy(&data.path, &data_copy, self.deadline())?;
                let binlog_copy = match &binlog_inside {
                    Some(rel) => data_copy.join(rel),
                    None => {
                        let b = c.path().join("binlog");
                        overlay::copy(&binlog_dir, &b, self.deadline())?;
                        b
                    }
                };
                self.progress
                    .info(format!("copied in {}", human(t0.elapsed())));
                copy = Some(c);
                (data_copy, binlog_copy)
            }
            None => {
                self.report.method = Some("overlay".into());
                overlay::private_mount_namespace()?;
                let d = Overlay::mount(&data.path, &work.path().join("data"))?;
                let data_view = d.view().to_path_buf();
                overlays.push(d);
                let binlog_view = match &binlog_inside {
                    Some(rel) => data_view.join(rel),
                    None => {
                        let b = Overlay::mount(&binlog_dir, &work.path().join("binlog"))?;
                        let v = b.view().to_path_buf();
                        overlays.push(b);
                        v
                    }
                };
                self.progress.detail(format!(
                    "overlay of {} mounted on {} (writable layer in {})",
                    data.path.display(),
                    data_view.display(),
                    work.path().display()
                ));
                (data_view, binlog_view)
            }
        };

        // The copy must read the snapshot's logs, never the files an absolute
        // index names (on the origin host: the live server's).
        let binlog_args = match &series {
            Some(s) => Some(self.rewrite_index(s, &binlog_view)?),
            None => None,
        };
        let mut relay_args = None;
        for r in &relays {
            let view = if r.dir == binlog_dir {
                binlog_view.clone()
            } else {
                data_view.clone()
            };
            let paths = self.rewrite_index(r, &view)?;
            if relay_args.is_none() {
                relay_args = Some(paths);
            }
        }
        let launch = Launch {
            binary: binary.clone(),
            datadir: data_view.clone(),
            run_dir: run_dir.clone(),
            server_id: server::private_server_id(
                &scan
                    .as_ref()
                    .map(|s| s.server_ids.clone())
                    .unwrap_or_default(),
            ),
            binlog: binlog_args,
            relay: relay_args,
            mysql_gtids: scan.as_ref().is_some_and(|s| s.mysql_gtids),
            extra: args.server_option.clone(),
        };

        // Phase 1: crash recovery, the restore point, a clean shutdown.
        self.interrupted()?;
        let recovery = self.recover(&launch, &data, series.as_ref(), scan.as_ref())?;
        let (verdict, notes) = coordinates::compare(recorded.as_ref(), &recovery.point);
        self.report.comparison = Some(verdict.clone());
        self.report.comparison_notes = notes.clone();
        self.report.restore_point = Some(recovery.point.clone());
        self.report.server_view = Some(recovery.view.clone());
        match verdict {
            Verdict::Match => self.progress.info(format!(
                "restore point {} equals the recorded coordinates",
                recovery.point.describe()
            )),
            Verdict::Differs => self.fail(
                exit::INCONSISTENT,
                format!("the copy is not what was recorded: {}", notes.join("; ")),
            ),
            Verdict::Inexact => {
                for n in notes {
                    self.progress.info(n);
                }
            }
            Verdict::NotRecorded => self
                .progress
                .info(format!("restore point {}", recovery.point.describe())),
        }
        if let (Some(r), Some(s)) = (recorded.as_ref().filter(|r| r.exact), scan.as_ref()) {
            // Exact coordinates: the server wrote nothing after them, so any
            // bytes past the point other than a Stop event are damage.
            let damage = matches!(
                s.tail,
                binlog::Tail::Incomplete { .. } | binlog::Tail::Torn { .. }
            );
            if damage && r.binlog_file.is_some() {
                self.fail(
                    exit::INCONSISTENT,
                    format!(
                        "the binary log {} has its last complete transaction end at {} and {}, where the recorded \
                         coordinates say nothing more was written",
                        series.as_ref().and_then(|s| s.last()).unwrap_or("?"),
                        s.end,
                        s.tail.describe()
                    ),
                );
            }
        }
        self.report.statements = statements::for_copy(&binary, &recovery.point);

        // Phase 2: every table, on an InnoDB read-only start.
        self.report.tables.mode = format!("{:?}", args.check_tables).to_lowercase();
        if args.check_tables == CheckTables::All {
            self.interrupted()?;
            self.check_tables(&launch)?;
        }

        // Teardown, saying what went wrong (the guards would do it silently).
        self.report.writable_bytes = Some(match &copy {
            Some(c) => overlay::disk_usage(c.path()),
            None => overlays.iter().map(|o| overlay::disk_usage(&o.upper)).sum(),
        });
        for o in overlays.into_iter().rev() {
            if let Err(e) = o.unmount() {
                self.warn(format!("{e:#}"));
            }
        }
        if let Some(c) = copy {
            c.remove()?;
        }
        work.remove()?;
        Ok(())
    }

    /// Which binary log series is the server's (one, normally).
    fn choose_series(
        &mut self,
        mut binlogs: Vec<binlog::Series>,
        dir: &Path,
        recorded: Option<&Recorded>,
    ) -> anyhow::Result<Option<binlog::Series>> {
        if binlogs.is_empty() {
            if let Some(file) = recorded.and_then(|r| r.binlog_file.as_deref()) {
                return Err(exit::fail(
                    exit::CONFIG,
                    format!(
                        "no binary log index in {}, but the coordinates file says the server wrote {file}: give the \
                         directory that holds it with --binlog-dir",
                        dir.display()
                    ),
                ));
            }
            self.progress.info(format!(
                "no binary log in {}: binary logging was off (or give --binlog-dir)",
                dir.display()
            ));
            return Ok(None);
        }
        if binlogs.len() > 1 {
            // The one the recorded coordinates name, else the newest.
            let wanted = recorded.and_then(|r| r.binlog_file.as_deref());
            binlogs.sort_by_key(|s| {
                let named = wanted.is_some_and(|w| s.files.iter().any(|f| f == w));
                let mtime = s
                    .last()
                    .and_then(|l| std::fs::metadata(s.dir.join(l)).ok())
                    .and_then(|m| m.modified().ok());
                (named, mtime)
            });
            let chosen = binlogs.last().expect("non-empty");
            self.warn(format!(
                "several binary log indexes in {}; using {}",
                dir.display(),
                chosen.index_name
            ));
        }
        let s = binlogs.pop().expect("non-empty");
        if let Some(last_missing) = s.missing.last() {
            let listed_last = s.missing.iter().any(|m| Some(m.as_str()) > s.last());
            if listed_last || s.files.is_empty() {
                return Err(exit::fail(
                    exit::INCONSISTENT,
                    format!(
                        "the binary log index {} lists {last_missing}, which is not in {}: the snapshot lacks the \
                         binary log being written when it was taken",
                        s.index_name,
                        s.dir.display()
                    ),
                ));
            }
            self.warn(format!(
                "the binary log index lists files that are not in {}: {}",
                s.dir.display(),
                s.missing.join(", ")
            ));
        }
        Ok(Some(s))
    }

    /// Read the last binary log file as the snapshot holds it.
    fn scan_last(&mut self, s: &binlog::Series) -> anyhow::Result<binlog::Scan> {
        let last = s.last().expect("a series has files");
        let path = s.dir.join(last);
        let scan = binlog::scan(&path).map_err(|e| {
            let code = exit::code_of(&e);
            exit::fail(
                if code == exit::SOFTWARE {
                    exit::INCONSISTENT
                } else {
                    code
                },
                format!("{e:#}"),
            )
        })?;
        self.report.binlog = Some(BinlogRecord {
            dir: s.dir.display().to_string(),
            index: s.index_name.clone(),
            files: s.files.len(),
            last_file: last.to_string(),
            size: scan.size,
            end: scan.end,
            tail: scan.tail.describe(),
            in_use: scan.in_use,
            checksums: scan.checksums,
            absolute_index: s.absolute,
        });
        self.progress.info(format!(
            "binary log: {} file(s); the last, {last} ({} bytes), has its last complete transaction end at {} and {}",
            s.files.len(),
            scan.size,
            scan.end,
            scan.tail.describe()
        ));
        if s.absolute {
            self.progress.info(format!(
                "the binary log index {} names its files by absolute path (on the host it came from, the live \
                 server's files): the copy gets one that names the snapshot's files",
                s.index_name
            ));
        }
        if let binlog::Tail::Torn { why, .. } = &scan.tail {
            self.warn(format!(
                "the binary log {last} is damaged or cut short after {}: {why}",
                scan.end
            ));
        }
        Ok(scan)
    }

    /// Write `series`' index into the view with absolute paths of the view's
    /// files; the server's --log-bin (or --relay-log) and index paths.
    fn rewrite_index(
        &mut self,
        series: &binlog::Series,
        view: &Path,
    ) -> anyhow::Result<(PathBuf, PathBuf)> {
        let index = view.join(&series.index_name);
        std::fs::write(&index, binlog::rewritten_index(series, view))
            .with_context(|| format!("writing {}", index.display()))?;
        Ok((view.join(&series.basename), index))
    }

    /// Start, wait for recovery (classifying a failure), read, stop.
    fn recover(
        &mut self,
        launch: &Launch,
        data: &datadir::DataDir,
        series: Option<&binlog::Series>,
        scan: Option<&binlog::Scan>,
    ) -> anyhow::Result<Recovery> {
        self.progress.info(format!(
            "starting {} on the copy for crash recovery (at most {} s)",
            launch.binary.describe(),
            self.args.timeout
        ));
        self.progress.detail(format!(
            "server arguments: {}",
            launch.args(Phase::Recover).join(" ")
        ));
        let mut server = Server::start(launch, Phase::Recover)?;
        self.check_confinement(launch, server.pid());
        let conn = match server.wait_ready(&launch.run_dir, self.deadline()) {
            Ok(c) => c,
            Err(stop) => return Err(self.start_failure(stop, &mut server, "crash recovery")),
        };
        let recovery_time = server.started.elapsed();
        self.report.recovery_ms = Some(ms(recovery_time));
        self.progress.info(format!(
            "the server recovered and accepted a connection in {}",
            human(recovery_time)
        ));
        let point_file = series.and_then(|s| s.last()).map(str::to_string);
        let point_pos = scan.map(|s| s.end);
        let family = data.family;
        let (file_q, pos_q) = (point_file.clone(), point_pos);
        let read = server.call(self.deadline(), move || {
            read_view(conn, family, file_q, pos_q)
        });
        let mut view = match read {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                let _ = server.shutdown(self.deadline());
                return Err(exit::fail(
                    exit::UNAVAILABLE,
                    format!("reading the restore point from the recovered server: {e}"),
                ));
            }
            Err(stop) => {
                return Err(self.start_failure(stop, &mut server, "reading the restore point"))
            }
        };
        let log = server.log_text();
        view.innodb_binlog_position = errorlog::innodb_binlog_position(&log);
        if let Err(e) = server.shutdown(self.deadline()) {
            self.report.server_log = Some(tail(&server.log_text()));
            return Err(e.context("stopping the server after recovery"));
        }
        let outside = external::mysql_outside(&launch.datadir, &view.tablespace_files);
        if let Some(e) =
            external::refusal(&[(&data.path, "in the data dictionary of", outside)], true)
        {
            return Err(e);
        }
        let damage = errorlog::corruption_lines(&server.log_text(), 10);
        if !damage.is_empty() {
            self.report.server_log = Some(tail(&server.log_text()));
            self.fail(
                exit::INCONSISTENT,
                format!(
                    "crash recovery reported damage:\n    {}",
                    damage.join("\n    ")
                ),
            );
        }
        // The restore point: the snapshot's binary log as read, with the
        // GTID state the recovered server derives from it.
        let gtid = match family {
            Family::Mariadb => view.gtid_at_point.clone().or_else(|| view.gtid.clone()),
            Family::Mysql => view.gtid.clone(),
        };
        if family == Family::Mariadb {
            if let (Some(at), Some(all)) = (&view.gtid_at_point, &view.gtid) {
                if !coordinates::same_gtids(at, all) {
                    self.warn(format!(
                        "the recovered server's binlog GTID state is {all}, but the binary log at the restore point \
                         gives {at}: the server counts a transaction the copy holds only in part"
                    ));
                }
            }
        }
        if let (Some((ifile, ipos)), Some(file), Some(pos)) =
            (&view.innodb_binlog_position, &point_file, point_pos)
        {
            if (ifile.as_str(), *ipos) > (file.as_str(), pos) {
                self.fail(
                    exit::INCONSISTENT,
                    format!(
                        "InnoDB's data holds transactions up to {ifile}:{ipos}, beyond the end of the binary log at \
                         {file}:{pos}: the binary log was cut short"
                    ),
                );
            }
        }
        let mut point_pos = point_pos;
        if let (Some(binlog::Tail::Encrypted), Some(file)) = (scan.map(|s| &s.tail), &point_file) {
            // Only the server can read an encrypted binary log: its size for
            // the file (which would include a torn tail) is the best there is.
            if let Some((_, size)) = view.binary_logs.iter().find(|(n, _)| n == file) {
                point_pos = Some(*size);
            }
            self.warn(format!(
                "the binary log {file} is encrypted: its end ({}) is the recovered server's SHOW BINARY LOGS size, \
                 not read event by event",
                point_pos.map_or("unknown".to_string(), |p| p.to_string())
            ));
        }
        let point = Point {
            binlog_file: point_file,
            binlog_position: point_pos,
            equivalent_positions: scan.map(|s| s.equivalent.clone()).unwrap_or_default(),
            gtid,
        };
        Ok(Recovery { point, view })
    }

    /// Phase 2: start InnoDB read-only and CHECK TABLE every table.
    fn check_tables(&mut self, launch: &Launch) -> anyhow::Result<()> {
        let t0 = Instant::now();
        self.progress
            .info("restarting the server InnoDB read-only to check every table");
        let mut server = Server::start(launch, Phase::Check)?;
        self.check_confinement(launch, server.pid());
        let conn = match server.wait_ready(&launch.run_dir, self.deadline()) {
            Ok(c) => c,
            Err(stop) => {
                return Err(self.start_failure(stop, &mut server, "the start for the table checks"))
            }
        };
        let listed = server.call(self.deadline(), move || {
            let mut conn = conn;
            let l = tables::list(&mut conn);
            (conn, l)
        });
        let (mut conn, list) = match listed {
            Ok((c, Ok(l))) => (c, l),
            Ok((_, Err(e))) => {
                return Err(exit::fail(
                    exit::UNAVAILABLE,
                    format!("listing the tables: {e}"),
                ))
            }
            Err(stop) => return Err(self.start_failure(stop, &mut server, "listing the tables")),
        };
        for (schema, name) in list {
            let checked = server.call(self.deadline(), move || {
                let mut c = conn;
                let r = tables::check(&mut c, &schema, &name);
                (c, r)
            });
            let result = match checked {
                Ok((c, r)) => {
                    conn = c;
                    r
                }
                Err(stop) => return Err(self.start_failure(stop, &mut server, "CHECK TABLE")),
            };
            if result.skipped {
                self.report.tables.skipped += 1;
                self.progress
                    .detail(format!("{}: not checkable by its engine", result.table));
            } else {
                self.report.tables.checked += 1;
                if result.ok {
                    self.progress.detail(format!("{}: OK", result.table));
                } else {
                    self.progress.error(format!(
                        "{} fails CHECK TABLE: {}",
                        result.table,
                        result.messages.join("; ")
                    ));
                    self.report.tables.failed.push(result);
                }
            }
        }
        drop(conn);
        let shutdown = server.shutdown(self.deadline());
        self.report.tables.duration_ms = Some(ms(t0.elapsed()));
        let failed = self.report.tables.failed.len();
        self.progress.info(format!(
            "{} tables checked, {failed} failed, in {}",
            self.report.tables.checked,
            human(t0.elapsed())
        ));
        if failed > 0 {
            self.report.server_log = Some(tail(&server.log_text()));
            let names: Vec<String> = self
                .report
                .tables
                .failed
                .iter()
                .map(|t| t.table.clone())
                .collect();
            self.fail(
                exit::INCONSISTENT,
                format!("{failed} table(s) fail CHECK TABLE: {}", names.join(", ")),
            );
        }
        shutdown
            .map(|_| ())
            .context("stopping the server after the table checks")
    }

    /// The error for a server that did not come up (or died, or we were
    /// interrupted): 65 when its log reports damage to the data, 69 when it
    /// could not start or recover in time, 128+N for a signal.
    fn start_failure(&mut self, stop: Stop, server: &mut Server, during: &str) -> anyhow::Error {
        let log = server.log_text();
        self.report.server_log = Some(tail(&log));
        let quoted = errorlog::quote(&log, 15);
        match stop {
            Stop::Signal(sig) => exit::fail(
                exit::signal(sig),
                format!("received signal {sig} during {during}; stopped the server, removing everything"),
            ),
            Stop::Timeout => exit::fail(
                exit::UNAVAILABLE,
                format!(
                    "the server did not finish {during} within --timeout ({} s); stopped it. Its error log ends:\n{quoted}",
                    self.args.timeout
                ),
            ),
            Stop::Exited(status) => {
                let damage = errorlog::corruption_lines(&log, 10);
                if damage.is_empty() {
                    exit::fail(
                        exit::UNAVAILABLE,
                        format!(
                            "the server exited during {during} ({status}) without reporting damage to the data: it \
                             cannot run here as started. Its error log:\n{quoted}"
                        ),
                    )
                } else {
                    exit::fail(
                        exit::INCONSISTENT,
                        format!(
                            "the server exited during {during} ({status}) reporting damage to the data:\n    {}",
                            damage.join("\n    ")
                        ),
                    )
                }
            }
        }
    }

    /// The closing line, the statements, the report; the exit status.
    fn finish(mut self) -> u8 {
        if let Some(sig) = crate::signals::received() {
            if self.failure.as_ref().is_none_or(|(c, _)| *c <= 128) {
                self.fail(exit::signal(sig), format!("received signal {sig}"));
            }
        }
        let (code, message) = self.failure.clone().unwrap_or((exit::OK, String::new()));
        let total = self.started.elapsed();
        self.report.exit_code = code;
        self.report.outcome = if code == exit::OK {
            "restorable"
        } else {
            "failed"
        }
        .into();
        self.report.error = (!message.is_empty()).then_some(message);
        self.report.finished_at = Some(rfc3339(SystemTime::now()));
        self.report.duration_ms = Some(ms(total));
        if code != exit::OK {
            // Statements for a copy that is not what it should be would mislead.
            self.report.statements.clear();
        }
        if let Some(path) = &self.args.report {
            if let Err(e) = write_atomic(path, self.report.to_json().as_bytes()) {
                self.progress
                    .error(format!("cannot write the report {}: {e}", path.display()));
                if code == exit::OK {
                    return self.closing(exit::CONFIG, total);
                }
            }
        }
        if code == exit::OK {
            let text: String = self
                .report
                .statements
                .iter()
                .map(|l| format!("{l}\n"))
                .collect();
            crate::messages::stdout(&text);
        }
        self.closing(code, total)
    }

    fn closing(&self, code: u8, total: Duration) -> u8 {
        let point = self
            .report
            .restore_point
            .as_ref()
            .map(Point::describe)
            .unwrap_or_else(|| "unknown".into());
        let recovery = self
            .report
            .recovery_ms
            .map(|m| human(Duration::from_secs_f64(m / 1000.0)))
            .unwrap_or_else(|| "-".into());
        let tables = match self.args.check_tables {
            CheckTables::All => format!(
                "{} tables checked, {} failed",
                self.report.tables.checked,
                self.report.tables.failed.len()
            ),
            CheckTables::None => "tables not checked".into(),
        };
        let matched = match self.report.comparison {
            Some(Verdict::Match) => ", as recorded",
            Some(Verdict::Inexact) => " (recorded coordinates were inexact)",
            _ => "",
        };
        if code == exit::OK {
            self.progress.info(format!(
                "restorable: restore point {point}{matched}; crash recovery took {recovery}; {tables}; done in {}",
                human(total)
            ));
        } else {
            self.progress.error(format!(
                "NOT verified (exit status {code}) in {}: restore point {point}; crash recovery {recovery}; {tables}",
                human(total)
            ));
        }
        code
    }
}

/// The last 256 KiB of a log, for the report.
fn tail(log: &str) -> String {
    let limit = 256 << 10;
    if log.len() <= limit {
        return log.to_string();
    }
    let mut start = log.len() - limit;
    while !log.is_char_boundary(start) {
        start += 1;
    }
    log[start..].to_string()
}

/// What the recovered server says: version, GTID state, binary logs.
fn read_view(
    mut conn: mysql::Conn,
    family: Family,
    file: Option<String>,
    pos: Option<u64>,
) -> mysql::Result<ServerView> {
    let mut v = ServerView::default();
    let nonempty = |s: Option<String>| s.filter(|s| !s.trim().is_empty());
    v.version = conn.query_first("SELECT @@version")?.unwrap_or_default();
    match family {
        Family::Mariadb => {
            let (binlog_pos, slave_pos): (Option<String>, Option<String>) = conn
                .query_first("SELECT @@global.gtid_binlog_pos, @@global.gtid_slave_pos")?
                .unwrap_or_default();
            v.gtid = nonempty(binlog_pos);
            v.gtid_slave_pos = nonempty(slave_pos);
            if let (Some(f), Some(p)) = (&file, pos) {
                let at: Option<Option<String>> =
                    conn.exec_first("SELECT BINLOG_GTID_POS(?, ?)", (f.as_str(), p))?;
                v.gtid_at_point = nonempty(at.flatten());
            }
        }
        Family::Mysql => {
            let executed: Option<Option<String>> =
                conn.query_first("SELECT @@global.gtid_executed")?;
            v.gtid = nonempty(executed.flatten()).map(|g| g.replace('\n', ""));
            // DATA DIRECTORY tablespaces are in the dictionary, not in the files.
            // (INNODB_TABLESPACES would open each file for its size.) Before
            // 8.0 there is no such table, and .isl files (refused) instead.
            let dictionary = datadir::parse_version(&v.version).is_some_and(|(a, _, _)| a >= 8);
            let paths: Vec<String> = if dictionary {
                conn.query("SELECT PATH FROM information_schema.INNODB_DATAFILES")?
            } else {
                Vec::new()
            };
            v.tablespace_files = paths
                .into_iter()
                .map(|p| (external::tablespace_name(&p), p))
                .collect();
        }
    }
    if file.is_some() {
        if let Ok(rows) = conn.query::<mysql::Row, _>("SHOW BINARY LOGS") {
            v.binary_logs = rows
                .iter()
                .filter_map(|r| {
                    let name: String = r.get_opt(0)?.ok()?;
                    let size: u64 = r.get_opt(1)?.ok()?;
                    Some((name, size))
                })
                .collect();
        }
    }
    Ok(v)
}
