use std::process::ExitCode;

/// mimalloc keeps freed memory for reuse instead of returning it to the kernel and faulting it
/// back in: the Parquet writers and Polars allocate and free large buffers all the time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    lakeward::cli::main()
}
