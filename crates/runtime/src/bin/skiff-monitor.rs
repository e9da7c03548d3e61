//! The container monitor as a program of its own, so this crate's tests can start monitors
//! (the shipped `skiff` binary runs the same code as `skiff internal monitor <dir>`).

fn main() -> std::process::ExitCode {
    let Some(dir) = std::env::args_os().nth(1) else {
        eprintln!("usage: skiff-monitor CONTAINER_DIR | skiff-monitor CONTAINERS_DIR --launcher");
        return std::process::ExitCode::FAILURE;
    };
    if std::env::args_os().nth(2).as_deref()
        == Some(std::ffi::OsStr::new(
            skiff_runtime::container::launcher::LAUNCHER_FLAG,
        ))
    {
        return skiff_runtime::container::launcher::serve();
    }
    skiff_runtime::container::monitor::main(std::path::Path::new(&dir))
}
