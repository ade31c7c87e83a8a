//! The sequence: before, connect, lock, coordinates, pre, freeze, snapshot,
//! thaw, post, unlock, after.

use crate::cli::{Cli, Sub};
use clap::Parser;

pub fn main_entry() -> u8 {
    // Temporary: full option loading lands with the options module.
    let cli = Cli::parse();
    if let Some(Sub::Guardian {
        deadline,
        mountpoints,
    }) = &cli.subcommand
    {
        return crate::freeze::guardian_main(*deadline, mountpoints) as u8;
    }
    0
}
