//! Merge option-file entries, environment variables and the command line into
//! one argument list for clap.
