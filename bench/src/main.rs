//! Load generator for `make bench` (issue: bench). Scenarios land with the bench capability;
//! for now it only reports that no scenario exists, so `make bench` cannot pretend to measure.
fn main() {
    eprintln!("capi-ws-bench: no scenarios yet (see the bench issue)");
    std::process::exit(2);
}
