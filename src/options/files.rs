//! MySQL/MariaDB option files: search order, `[group]`s, `!include`,
//! `!includedir`, quoting and escapes, world-writable files ignored.
