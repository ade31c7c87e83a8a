//! The sequence: before, connect, lock, coordinates, pre, freeze, snapshot,
//! thaw, post, unlock, after.

pub fn main_entry() -> u8 {
    0
}
