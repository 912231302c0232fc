use std::process::ExitCode;

/// mimalloc instead of glibc's allocator: HTTP ingest measured ~30% more events/s with it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    eventline_cli::main().await
}
