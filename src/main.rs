use std::process::ExitCode;

fn main() -> ExitCode {
    lakeward::cli::main()
}
