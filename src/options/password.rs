//! The password: a terminal prompt for a bare `-p` (or a bare `password` line
//! in an option file), and masking of a password given on the command line
//! in this process's own argv, as the mysql client does, so that `ps` and
//! /proc/PID/cmdline stop showing it.

use crate::exit;
use std::io::{BufRead, Write};

pub use crate::cli::PASSWORD_PROMPT as PROMPT;

/// Ask for the password on the terminal with echo off.
pub fn prompt() -> anyhow::Result<String> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    let no_tty = || {
        exit::fail(
            exit::USAGE,
            "a bare -p/--password asks for the password on the terminal, and there is none; \
             give it as --password=..., in MYSQL_PWD or in an option file ([client] password = ...)",
        )
    };
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(|_| no_tty())?;
    let saved = tcgetattr(&tty).map_err(|_| no_tty())?;
    let mut silent = saved.clone();
    silent.local_flags.remove(LocalFlags::ECHO);
    // Echo off before the prompt shows: whatever is typed once it is seen
    // is never echoed.
    tcsetattr(&tty, SetArg::TCSANOW, &silent)?;
    (&tty).write_all(b"Enter password: ")?;
    let mut line = String::new();
    let read = std::io::BufReader::new(&tty).read_line(&mut line);
    let _ = tcsetattr(&tty, SetArg::TCSANOW, &saved);
    let _ = (&tty).write_all(b"\n");
    read?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// Overwrite a password value in place: 'x's, cut after the first one
/// (mysql client: `while (*argument) *argument++= 'x'; if (*start) start[1]= 0;`).
pub fn mask_in_place(arg: &mut [u8], value_start: usize) {
    if value_start >= arg.len() {
        return;
    }
    for b in &mut arg[value_start..] {
        *b = b'x';
    }
    if arg.len() > value_start + 1 {
        arg[value_start + 1] = 0;
    }
}

/// Where a password value starts in a command-line argument, if it holds one.
pub fn password_value_offset(arg: &[u8]) -> Option<usize> {
    if arg.starts_with(b"--password=") {
        Some("--password=".len())
    } else if arg.len() > 2 && arg.starts_with(b"-p") {
        Some(2)
    } else {
        None
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod argv {
    use std::os::raw::{c_char, c_int};
    use std::sync::atomic::{AtomicIsize, AtomicPtr, Ordering};

    static ARGC: AtomicIsize = AtomicIsize::new(0);
    static ARGV: AtomicPtr<*mut c_char> = AtomicPtr::new(std::ptr::null_mut());

    /// glibc calls .init_array functions with (argc, argv, envp), as Rust's
    /// std relies on too: this keeps the pointers to the original argv
    /// strings, the memory /proc/PID/cmdline shows.
    #[used]
    #[link_section = ".init_array"]
    static CAPTURE: extern "C" fn(c_int, *mut *mut c_char, *mut *mut c_char) = capture;

    extern "C" fn capture(argc: c_int, argv: *mut *mut c_char, _envp: *mut *mut c_char) {
        ARGC.store(argc as isize, Ordering::SeqCst);
        ARGV.store(argv, Ordering::SeqCst);
    }

    /// Mask every password value before `--` in the real argv.
    pub fn mask() {
        let argc = ARGC.load(Ordering::SeqCst);
        let argv = ARGV.load(Ordering::SeqCst);
        if argv.is_null() {
            return;
        }
        for i in 1..argc {
            // SAFETY: argv has argc valid, NUL-terminated, writable strings
            // (C guarantees argv strings are modifiable); we only write
            // within each string's existing length.
            let bytes = unsafe {
                let p = *argv.offset(i);
                if p.is_null() {
                    break;
                }
                let len = std::ffi::CStr::from_ptr(p).to_bytes().len();
                std::slice::from_raw_parts_mut(p as *mut u8, len)
            };
            if bytes == b"--" {
                break;
            }
            if let Some(start) = super::password_value_offset(bytes) {
                super::mask_in_place(bytes, start);
            }
        }
    }
}

/// Hide command-line passwords from `ps` (no-op where argv cannot be reached).
pub fn mask_argv() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    argv::mask();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masking_overwrites_the_value_and_cuts_it_like_the_mysql_client() {
        let mut a = b"-pSecret".to_vec();
        let at = password_value_offset(&a).unwrap();
        mask_in_place(&mut a, at);
        assert_eq!(a, b"-px\0xxxx");
        let mut b = b"--password=pw".to_vec();
        let at = password_value_offset(&b).unwrap();
        mask_in_place(&mut b, at);
        assert_eq!(b, b"--password=x\0");
        assert_eq!(password_value_offset(b"-p"), None);
        assert_eq!(password_value_offset(b"--port=1"), None);
        assert_eq!(password_value_offset(b"-P3306"), None);
    }
}
