//! `threads.copy` on a filesystem that can share extents: a loop-mounted
//! XFS made with `mkfs.xfs -m reflink=1` (needs root and xfsprogs; skipped
//! with the reason printed otherwise).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{git_in, stderr, TestRepo};

fn run(cmd: &str, args: &[&str]) -> Result<String, String> {
    match Command::new(cmd).args(args).output() {
        Ok(o) if o.status.success() => Ok(String::from_utf8_lossy(&o.stdout).into_owned()),
        Ok(o) => Err(format!("{cmd} {args:?}: {}", String::from_utf8_lossy(&o.stderr))),
        Err(e) => Err(format!("{cmd}: {e}")),
    }
}

/// A loop-mounted reflink XFS, unmounted on drop (even when the test fails).
struct Xfs {
    _dir: tempfile::TempDir,
    mnt: PathBuf,
}

impl Xfs {
    fn new() -> Result<Xfs, String> {
        if run("id", &["-u"])?.trim() != "0" {
            return Err("not root (a loop mount needs it)".into());
        }
        let dir = tempfile::Builder::new().prefix("iso-xfs-").tempdir().map_err(|e| e.to_string())?;
        let img = dir.path().join("xfs.img");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).map_err(|e| e.to_string())?;
        run("truncate", &["-s", "512M", img.to_str().unwrap()])?;
        run("mkfs.xfs", &["-q", "-m", "reflink=1", img.to_str().unwrap()]).map_err(|e| format!("no usable mkfs.xfs: {e}"))?;
        run("mount", &["-o", "loop", img.to_str().unwrap(), mnt.to_str().unwrap()])?;
        Ok(Xfs { _dir: dir, mnt })
    }
}

impl Drop for Xfs {
    fn drop(&mut self) {
        let _ = run("umount", &[self.mnt.to_str().unwrap()]);
    }
}

fn shared(path: &Path) -> bool {
    run("filefrag", &["-v", path.to_str().unwrap()]).is_ok_and(|out| out.lines().skip(3).any(|l| l.contains("shared")))
}

#[test]
fn copies_share_extents_on_a_reflink_filesystem() {
    let xfs = match Xfs::new() {
        Ok(x) => x,
        Err(why) => {
            eprintln!("skipped copies_share_extents_on_a_reflink_filesystem: {why}");
            return;
        }
    };
    // The state directory and port window of a test repository; the
    // repository itself lives on the XFS.
    let state = TestRepo::new("[ports]\nblock_size = 5\n[threads]\nmax = 1\n");
    let app = xfs.mnt.join("app");
    std::fs::create_dir(&app).unwrap();
    git_in(&xfs.mnt, &["init", "-q", "-b", "main", app.to_str().unwrap()]);
    let toml = format!("[ports]\nbase = {}\nblock_size = 5\n[threads]\nmax = 1\ncopy = [\"deps\"]\n", state.port_base);
    std::fs::write(app.join("iso.toml"), toml).unwrap();
    std::fs::write(app.join(".gitignore"), "deps/\n").unwrap();
    git_in(&app, &["add", "."]);
    git_in(&app, &["commit", "-q", "-m", "initial"]);
    std::fs::create_dir_all(app.join("deps/pkg")).unwrap();
    let big: Vec<u8> = (0..32u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(app.join("deps/pkg/big.bin"), &big).unwrap();
    assert!(!shared(&app.join("deps/pkg/big.bin")), "nothing shared before the copy");

    let out = state.iso_cmd_at(&app, &["init", "x"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let copy = app.join(".worktrees/thread-1/deps/pkg/big.bin");
    assert_eq!(std::fs::read(&copy).unwrap(), big);
    assert!(shared(&copy), "the copy shares its extents: {:?}", run("filefrag", &["-v", copy.to_str().unwrap()]));
    let out = state.iso_cmd_at(&app, &["cleanup", "x"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}
