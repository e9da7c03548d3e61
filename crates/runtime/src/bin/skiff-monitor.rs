//! The node's runtime helpers as a program of their own, so this crate's tests can use them
//! (the shipped `skiff` binary runs the same code as `skiff internal ...`): `skiff-monitor
//! monitor DIR`, `skiff-monitor monitor ROOT --launcher`, `skiff-monitor exec --process FILE
//! --pid-file FILE DIR`.

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

use skiff_runtime::container::{launcher, monitor, nsexec};

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let args: Vec<&str> = args.iter().filter_map(|a| a.to_str()).collect();
    match args.as_slice() {
        ["monitor", _, flag] if *flag == launcher::LAUNCHER_FLAG => launcher::serve(),
        ["monitor", dir] => monitor::main(Path::new(dir)),
        ["exec", "--process", process, "--pid-file", pid_file, dir] => {
            nsexec::main(Path::new(dir), Path::new(process), Path::new(pid_file))
        }
        _ => {
            eprintln!(
                "usage: skiff-monitor monitor DIR | monitor ROOT --launcher | \
                 exec --process FILE --pid-file FILE DIR"
            );
            ExitCode::FAILURE
        }
    }
}
