use std::path::PathBuf;
use std::process::Output;

/// The interop venv's interpreter: `$TESTKIT_PYTHON`, else `<workspace>/.venv/bin/python`.
/// `./dev.sh test` creates the venv with `confluent-kafka[avro,schemaregistry]` in it.
pub fn python() -> PathBuf {
    if let Some(path) = std::env::var_os("TESTKIT_PYTHON") {
        return PathBuf::from(path);
    }
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let venv = workspace.join(".venv/bin/python");
    assert!(
        venv.is_file(),
        "the Python interop venv is missing at {}; run `./dev.sh test`, which creates it",
        venv.display()
    );
    venv
}

/// Runs `script` (Python source) with `args`, panicking with its output if it fails.
pub async fn run_python(script: &str, args: &[&str]) -> Output {
    let output = tokio::process::Command::new(python())
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run python: {e}"));
    assert!(
        output.status.success(),
        "python failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}
