use std::process::ExitCode;

/// mimalloc keeps freed memory for reuse instead of returning it to the kernel and faulting it
/// back in: the Parquet writers and Polars allocate and free large buffers all the time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // First, before any thread starts: this process may be a shell task's supervisor.
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    lakeward::jobs::supervise::run_if_asked(&args);
    lakeward::process::limit_c_heap();
    lakeward::lake::engine::tune_polars();
    // Still this very executable if the file is replaced while it runs.
    let binary = std::path::PathBuf::from("/proc/self/exe");
    if binary.exists() {
        lakeward::jobs::supervise::use_binary(binary);
    }
    lakeward::cli::main()
}
