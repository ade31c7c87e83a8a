//! The database side: connecting, detecting the server, taking and releasing
//! the lock on one dedicated session, reading coordinates, verifying the lock.
