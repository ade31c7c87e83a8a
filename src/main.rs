//! Thin entry point: load options, run, map the outcome to an exit status.

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(mysql_quiesce::mode::main_entry())
}
