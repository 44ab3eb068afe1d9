//! A shared server: access follows each dataset's terms. Two local users, one in a dataset's
//! Unix group and one not, use one daemon's mount (`allow_other`), as root sets it up.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;

const GROUP: &str = "medimg-t-dua";
const INSIDE: &str = "medimg-t-in";
const OUTSIDE: &str = "medimg-t-out";

/// The group and the two users, made once (idempotent across runs).
fn users() {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "these tests create Unix users: run them as root (CI does)"
    );
    let (code, _, err) = sh(&format!(
        "getent group {GROUP} >/dev/null || groupadd {GROUP}"
    ));
    assert_eq!(code, 0, "{err}");
    for (user, groups) in [(INSIDE, format!("-G {GROUP}")), (OUTSIDE, String::new())] {
        let (code, _, err) = sh(&format!(
            "id {user} >/dev/null 2>&1 || useradd -M -N {groups} {user}"
        ));
        assert_eq!(code, 0, "{err}");
    }
}

/// `cmd` as `user`, in a shell: (exit code, stdout, stderr).
fn as_user(user: &str, cmd: &str) -> (i32, String, String) {
    sh(&format!(
        "runuser -u {user} -- sh -c '{}'",
        cmd.replace('\'', "'\\''")
    ))
}

#[test]
fn a_group_reads_its_dataset_under_every_view_and_nobody_else_reaches_it() {
    users();
    let up = Upstream::start();
    let open_files = image_folder(6, 10);
    let dua_files = image_folder(6, 12);
    up.put("/open.zip", zip(&open_files), true);
    up.put("/dua.zip", zip(&dua_files), true);
    let cat = catalog(&[
        ("public", "X-ray", "lung", &[("open.zip", "zip")]),
        ("restricted", "X-ray", "lung", &[("dua.zip", "zip")]),
    ]);
    let fx = Fixture::new(
        &up,
        &cat,
        &format!(
            "[fuse]\nallow_other = true\n[access]\ndatasets = {{ restricted = \"{GROUP}\" }}\n"
        ),
    );
    // The users must reach the mountpoint through the test's private directory.
    std::fs::set_permissions(fx.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let m = fx.mount(&[]);
    let mnt = m.mnt.display().to_string();
    let views = [
        "datasets/restricted",
        "modality/X-ray/lung/restricted",
        "organ/lung/X-ray/restricted",
    ];
    let file = &dua_files[0].0;

    // Inside the group: every view lists and reads the right bytes.
    let want = fx.dir.path().join("want.png");
    std::fs::write(&want, &dua_files[0].1).unwrap();
    std::fs::set_permissions(&want, std::fs::Permissions::from_mode(0o644)).unwrap();
    for v in views {
        let (code, _, err) = as_user(
            INSIDE,
            &format!(
                "ls {mnt}/{v} >/dev/null && cmp {mnt}/{v}/{file} {}",
                want.display()
            ),
        );
        assert_eq!(code, 0, "{v}: {err}");
    }
    // Outside: EACCES everywhere, for listing, stat and read alike.
    for v in views {
        for cmd in [
            format!("ls {mnt}/{v}"),
            format!("stat {mnt}/{v}/{file}"),
            format!("cat {mnt}/{v}/{file}"),
        ] {
            let (code, _, err) = as_user(OUTSIDE, &cmd);
            assert_ne!(code, 0, "{cmd}");
            assert!(err.contains("Permission denied"), "{cmd}: {err}");
        }
    }
    // The rest of the mount is everyone's, and says which group grants the dataset.
    for user in [INSIDE, OUTSIDE] {
        let (code, out, err) = as_user(
            user,
            &format!(
                "cat {mnt}/datasets/public/{} >/dev/null && cat {mnt}/catalog.csv {mnt}/about/restricted.md",
                open_files[0].0
            ),
        );
        assert_eq!(code, 0, "{user}: {err}");
        assert!(
            out.contains(&format!("datasets/restricted,{GROUP}")),
            "{out}"
        );
        assert!(out.contains(&format!("Unix group `{GROUP}`")), "{out}");
    }
    let meta = std::fs::metadata(m.mnt.join("datasets/restricted").join(file)).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o440);

    // The cache holds the restricted bytes now: neither user reaches them around the mount.
    let cache = fx.cache().display().to_string();
    for user in [INSIDE, OUTSIDE] {
        let (code, _, err) = as_user(user, &format!("ls {cache} || cat {cache}/index.sqlite"));
        assert_ne!(code, 0, "{user} read the cache");
        assert!(err.contains("Permission denied"), "{err}");
    }
    // Nor may they ask the daemon about it.
    let (code, _, err) = as_user(
        OUTSIDE,
        &format!(
            "{} status --cache-dir {cache}",
            env!("CARGO_BIN_EXE_medimg")
        ),
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no medimg daemon answers"), "{err}");
    let mut stack = vec![fx.cache()];
    while let Some(p) = stack.pop() {
        let md = std::fs::metadata(&p).unwrap();
        let want = if md.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(md.permissions().mode() & 0o777, want, "{}", p.display());
        if md.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
    }
}

#[test]
fn an_unknown_group_or_dataset_in_access_stops_the_daemon_with_its_name() {
    let up = Upstream::start();
    for (access, named) in [
        (
            "datasets = { restricted = \"no-such-group-here\" }",
            "no-such-group-here",
        ),
        ("datasets = { nope = \"root\" }", "datasets.\"nope\""),
        ("levels = { secret = \"root\" }", "levels.secret"),
    ] {
        let fx = Fixture::new(
            &up,
            &catalog(&[("restricted", "X-ray", "lung", &[("dua.zip", "zip")])]),
            &format!("[access]\n{access}\n"),
        );
        let out = medimg()
            .arg("mount")
            .arg(fx.mnt())
            .arg("--catalog")
            .arg(fx.dir.path().join("catalog.toml"))
            .arg("--config")
            .arg(fx.dir.path().join("medimg.toml"))
            .arg("--cache-dir")
            .arg(fx.cache())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{access}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(named), "{access}: {err}");
        assert!(!is_mounted(&fx.mnt()));
    }
}
