//! The supervisor on its own, as `cluster supervise` runs it (tests and library users who do
//! not ship the `cluster` binary).

fn main() {
    match backends::SupervisorArgs::parse(std::env::args().skip(1)) {
        Ok(args) => std::process::exit(backends::supervisor::run(args)),
        Err(e) => {
            eprintln!("cluster-supervise: {e}");
            std::process::exit(2);
        }
    }
}
