use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    eventline_cli::main().await
}
