//! The `quiver` command line, as `server/src/main.rs` builds it: the binary the end-to-end
//! tests run (see `quiver_tests::quiver_command`).

fn main() -> std::process::ExitCode {
    quiver_server::run_cli(clap::Parser::parse())
}
