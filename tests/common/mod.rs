//! Shared test fixtures: a throwaway MariaDB server (`server`) and loop-mounted
//! scratch filesystems (`loopfs`). Each test binary includes this with `mod common;`.
#![allow(dead_code)]

pub mod loopfs;
pub mod server;
