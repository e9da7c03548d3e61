//! `skiff image`: the node's image store from the command line (import, pull, ls, inspect, rm,
//! prune), acting on the store under `--data-dir`, safely beside a running node agent.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use skiff_runtime::image::import::{self, RootfsOptions};
use skiff_runtime::image::pull::{self, Credentials, Progress, PullOptions};
use skiff_runtime::image::reference::Reference;
use skiff_runtime::image::store::{Freed, ImageRecord, ImageStore};

#[derive(Args)]
pub struct ImageArgs {
    /// The node's data dir; its image store is `<data-dir>/images`.
    #[arg(
        long,
        global = true,
        default_value = "/var/lib/skiff",
        env = "SKIFF_DATA_DIR"
    )]
    data_dir: PathBuf,
    #[command(subcommand)]
    command: ImageCommand,
}

#[derive(Subcommand)]
enum ImageCommand {
    /// Import images from a `docker save` or OCI layout archive, or make one from a root filesystem.
    #[command(after_help = "Examples:\n  \
        skiff image import busybox.tar\n  \
        skiff image import --tag myapp:1.0 image.oci.tar\n  \
        skiff image import --rootfs ./rootfs --tag myapp:1.0 --cmd /bin/sh --env PATH=/bin")]
    Import(ImportArgs),
    /// Pull an image from a registry (`busybox` means docker.io/library/busybox:latest).
    #[command(after_help = "Examples:\n  \
        skiff image pull busybox\n  \
        skiff image pull localhost:5000/team/app:1.2\n  \
        skiff image pull --username me --password-stdin registry.example.com/app < token")]
    Pull(PullArgs),
    /// List images: IMAGE, TAG, IMAGE ID and SIZE, as `crictl images`.
    #[command(visible_alias = "list", visible_alias = "images")]
    Ls(LsArgs),
    /// Show images' records (config, layers, tags, digests) as JSON.
    Inspect {
        /// Images by reference, id or unique id prefix.
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Remove images (a tag, or the whole image when given by id or when its last tag goes).
    #[command(visible_alias = "rmi")]
    Rm {
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Remove untagged images (with --all, every image), then layers and blobs nothing uses.
    Prune {
        /// Remove every image, tagged or not.
        #[arg(short, long)]
        all: bool,
    },
}

#[derive(Args)]
struct ImportArgs {
    /// `docker save` archives, OCI layout archives (`.tar`, `.tar.gz`) or OCI layout directories.
    #[arg(required_unless_present = "rootfs", conflicts_with = "rootfs")]
    files: Vec<PathBuf>,
    /// Make a one-layer image from this root filesystem (a directory or a tar), as `docker import`.
    #[arg(long, requires = "tag")]
    rootfs: Option<PathBuf>,
    /// NAME[:TAG] for the image (required with --rootfs; renames an archive's only image).
    #[arg(long, short)]
    tag: Option<String>,
    /// The image's entrypoint, one argument per flag (only with --rootfs).
    #[arg(long, requires = "rootfs", allow_hyphen_values = true)]
    entrypoint: Vec<String>,
    /// The image's default command, one argument per flag (only with --rootfs).
    #[arg(long, requires = "rootfs", allow_hyphen_values = true)]
    cmd: Vec<String>,
    /// KEY=VALUE environment variables of the image (only with --rootfs).
    #[arg(long, requires = "rootfs")]
    env: Vec<String>,
    /// The image's working directory (only with --rootfs).
    #[arg(long, requires = "rootfs")]
    workdir: Option<String>,
}

#[derive(Args)]
struct PullArgs {
    /// The image reference: NAME[:TAG] or NAME@sha256:DIGEST.
    reference: String,
    /// Registry user name (otherwise ~/.docker/config.json is used, if it has the registry).
    #[arg(long, requires = "password_source")]
    username: Option<String>,
    /// Registry password (prefer --password-stdin: a flag shows in the process list).
    #[arg(long, group = "password_source")]
    password: Option<String>,
    /// Read the registry password from standard input.
    #[arg(long, group = "password_source")]
    password_stdin: bool,
    /// A registry to reach over plain HTTP (localhost is always allowed). Repeatable.
    #[arg(long = "insecure-registry")]
    insecure_registries: Vec<String>,
    /// No progress output; print only the image id.
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Args)]
struct LsArgs {
    /// Print only image ids.
    #[arg(short, long)]
    quiet: bool,
    /// Show full image ids.
    #[arg(long)]
    no_trunc: bool,
}

pub fn run(args: ImageArgs) -> anyhow::Result<()> {
    let store = ImageStore::open(&args.data_dir).with_context(|| {
        format!(
            "cannot open the image store under {}",
            args.data_dir.display()
        )
    })?;
    let mut out = std::io::stdout().lock();
    match args.command {
        ImageCommand::Import(a) => import_cmd(&store, a, &mut out),
        ImageCommand::Pull(a) => pull_cmd(&store, a, &mut out),
        ImageCommand::Ls(a) => {
            let images = store.list()?;
            if a.quiet {
                for image in &images {
                    writeln!(out, "{}", image.id)?;
                }
                return Ok(());
            }
            out.write_all(format_list(&images, a.no_trunc).as_bytes())?;
            Ok(())
        }
        ImageCommand::Inspect { images } => {
            let mut records = Vec::new();
            for name in &images {
                records.push(find(&store, name)?);
            }
            serde_json::to_writer_pretty(&mut out, &records)?;
            writeln!(out)?;
            Ok(())
        }
        ImageCommand::Rm { images } => {
            // Every name is tried; the command fails at the end if any could not be removed,
            // as `crictl rmi` and `docker rmi` do.
            let mut failed = 0;
            for name in &images {
                match store.remove(name, &in_use()) {
                    Ok(freed) => print_freed(&mut out, &freed, Some(name))?,
                    Err(e) => {
                        eprintln!("error: {e}");
                        failed += 1;
                    }
                }
            }
            if failed > 0 {
                anyhow::bail!("{failed} of {} images could not be removed", images.len());
            }
            Ok(())
        }
        ImageCommand::Prune { all } => {
            let freed = store.prune(&in_use(), all)?;
            print_freed(&mut out, &freed, None)?;
            writeln!(
                out,
                "Total reclaimed space: {} ({} layers, {} blobs)",
                human_size(freed.bytes),
                freed.layers,
                freed.blobs
            )?;
            Ok(())
        }
    }
}

/// Images that containers use. There are no containers before the node agent exists; with it,
/// this asks the agent's container records.
fn in_use() -> Vec<skiff_runtime::image::digest::Digest> {
    Vec::new()
}

fn find(store: &ImageStore, name: &str) -> anyhow::Result<ImageRecord> {
    store
        .resolve(name)?
        .ok_or_else(|| skiff_runtime::image::ImageError::NotFound(name.to_string()).into())
}

fn import_cmd(store: &ImageStore, a: ImportArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    if a.tag.is_some() && a.files.len() > 1 {
        anyhow::bail!("--tag names one image; import the archives one at a time to tag them");
    }
    let records = match &a.rootfs {
        Some(rootfs) => {
            let options = RootfsOptions {
                // clap requires --tag with --rootfs.
                tag: a.tag.clone().unwrap_or_default(),
                entrypoint: a.entrypoint,
                cmd: a.cmd,
                env: a.env,
                workdir: a.workdir,
            };
            vec![import::import_rootfs(store, rootfs, &options)?]
        }
        None => {
            let mut records = Vec::new();
            for file in &a.files {
                records.extend(import::import_archive(store, file, a.tag.as_deref())?);
            }
            records
        }
    };
    for record in &records {
        if record.repo_tags.is_empty() {
            writeln!(out, "Loaded image ID: {}", record.id)?;
        }
        for tag in &record.repo_tags {
            writeln!(out, "Loaded image: {tag}")?;
        }
    }
    Ok(())
}

fn pull_cmd(store: &ImageStore, a: PullArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let reference = Reference::parse(&a.reference)?;
    let password = if a.password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        Some(line.trim_end_matches(['\r', '\n']).to_string())
    } else {
        a.password
    };
    let credentials = match (a.username, password) {
        (Some(username), Some(password)) => Some(Credentials { username, password }),
        (Some(_), None) => anyhow::bail!("--username needs --password or --password-stdin"),
        (None, Some(_)) => anyhow::bail!("a password needs --username"),
        (None, None) => None,
    };
    let options = PullOptions {
        credentials,
        insecure_registries: a.insecure_registries,
        progress: if a.quiet {
            Progress::Quiet
        } else {
            Progress::Auto
        },
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let before = store.get(&reference)?.map(|image| image.id);
    let record = runtime.block_on(pull::pull(store, &reference, &options))?;
    if a.quiet {
        writeln!(out, "{}", record.id)?;
    } else if before.as_ref() == Some(&record.id) {
        writeln!(out, "Image is up to date for {reference} ({})", record.id)?;
    } else {
        writeln!(
            out,
            "Downloaded newer image for {reference} ({})",
            record.id
        )?;
    }
    Ok(())
}

fn print_freed(out: &mut dyn Write, freed: &Freed, name: Option<&str>) -> std::io::Result<()> {
    if freed.images.is_empty() {
        if let Some(name) = name {
            writeln!(out, "Untagged: {name}")?;
        }
    }
    for id in &freed.images {
        writeln!(out, "Deleted: {id}")?;
    }
    Ok(())
}

/// The columns of `crictl images`: one row per tag (an untagged image is one `<none>` row).
fn format_list(images: &[ImageRecord], no_trunc: bool) -> String {
    let mut rows = vec![[
        "IMAGE".to_string(),
        "TAG".to_string(),
        "IMAGE ID".to_string(),
        "SIZE".to_string(),
    ]];
    for image in images {
        let id = if no_trunc {
            image.id.to_string()
        } else {
            // crictl shows 13 hex digits.
            image.id.hex().chars().take(13).collect()
        };
        let size = human_size(image.size);
        let mut names: Vec<(String, String)> =
            image.repo_tags.iter().map(|t| split_tag(t)).collect();
        if names.is_empty() {
            let repo = image
                .repo_digests
                .first()
                .and_then(|d| d.split('@').next())
                .unwrap_or("<none>");
            names.push((repo.to_string(), "<none>".to_string()));
        }
        for (repo, tag) in names {
            rows.push([repo, tag, id.clone(), size.clone()]);
        }
    }
    tabulate(&rows)
}

/// `registry/repo:tag` -> (`registry/repo`, `tag`); the colon of a registry port is not a tag.
fn split_tag(reference: &str) -> (String, String) {
    let name_start = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[name_start..].rfind(':') {
        Some(i) => (
            reference[..name_start + i].to_string(),
            reference[name_start + i + 1..].to_string(),
        ),
        None => (reference.to_string(), "<none>".to_string()),
    }
}

/// Left-aligned columns at least 20 wide with 3 spaces between, as crictl's tabwriter.
fn tabulate(rows: &[[String; 4]]) -> String {
    let mut widths = [0usize; 4];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count() + 3).max(20);
        }
    }
    let mut text = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                let pad = widths[i] - cell.chars().count();
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// Sizes as crictl prints them (decimal units, 3 significant digits): `4.26MB`, `815kB`.
fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1000.0 && unit + 1 < UNITS.len() {
        size /= 1000.0;
        unit += 1;
    }
    format!("{}{}", significant(size, 3), UNITS[unit])
}

/// `%.3g` as Go prints it: at most `digits` significant digits, no trailing zeros.
fn significant(value: f64, digits: i32) -> String {
    if value == 0.0 {
        return "0".to_string();
    }
    let magnitude = value.abs().log10().floor() as i32;
    let decimals = (digits - 1 - magnitude).max(0) as usize;
    let text = format!("{value:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_print_as_crictl() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1000), "1kB");
        assert_eq!(human_size(815_300), "815kB");
        assert_eq!(human_size(4_261_000), "4.26MB");
        assert_eq!(human_size(1_500_000_000), "1.5GB");
    }

    #[test]
    fn tags_split_after_the_registry_port() {
        assert_eq!(
            split_tag("localhost:5000/app:1.0"),
            ("localhost:5000/app".to_string(), "1.0".to_string())
        );
        assert_eq!(
            split_tag("docker.io/library/busybox:latest"),
            (
                "docker.io/library/busybox".to_string(),
                "latest".to_string()
            )
        );
        assert_eq!(
            split_tag("localhost:5000/app"),
            ("localhost:5000/app".to_string(), "<none>".to_string())
        );
    }

    #[test]
    fn columns_are_padded_like_crictl() {
        let rows = [
            [
                "IMAGE".into(),
                "TAG".into(),
                "IMAGE ID".into(),
                "SIZE".into(),
            ],
            [
                "docker.io/library/busybox".into(),
                "latest".into(),
                "0123456789abc".into(),
                "2.1MB".into(),
            ],
        ];
        let text = tabulate(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            format!("{:<28}{:<20}{:<20}SIZE", "IMAGE", "TAG", "IMAGE ID")
        );
        assert_eq!(
            lines[1],
            format!(
                "{:<28}{:<20}{:<20}2.1MB",
                "docker.io/library/busybox", "latest", "0123456789abc"
            )
        );
    }
}
