//! The `stoker` command: `stoker serve`, and the operators' CLI.

fn main() -> std::process::ExitCode {
    stoker_server::cli::main()
}
