//! The password: terminal prompt for a bare `-p`, and masking of a password
//! given on the command line in the process's argv (as the mysql client does).
