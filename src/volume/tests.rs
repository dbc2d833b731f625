//! Unit tests of the atomic writer (`volume.rs`).
use super::*;
use std::collections::BTreeMap;

use crate::test_dir::Tmp;

fn tmp(name: &str) -> Tmp {
    crate::test_dir::fresh(Path::new("/dev/shm"), "unit", name)
}

fn payload(files: &[(&str, &str, u32)]) -> Payload {
    Payload {
        files: files
            .iter()
            .map(|(k, v, m)| {
                (
                    k.to_string(),
                    FileContent {
                        data: SecretBytes::new(v.as_bytes().to_vec()),
                        mode: *m,
                        owner: None,
                        group: None,
                    },
                )
            })
            .collect::<BTreeMap<_, _>>(),
    }
}

fn entries(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

#[test]
fn first_write_lays_out_links_and_a_version() {
    let t = tmp("first");
    let v = Volume::new(&t.0, false);
    let Commit::Written { version } = v
        .commit(&payload(&[("a", "1", 0o600), ("d/b", "2", 0o644)]))
        .unwrap()
    else {
        panic!("expected a write")
    };
    assert_eq!(
        fs::read_link(t.0.join("..data")).unwrap(),
        PathBuf::from(&version)
    );
    assert_eq!(
        fs::read_link(t.0.join("a")).unwrap(),
        PathBuf::from("..data/a")
    );
    assert_eq!(fs::read_to_string(t.0.join("d/b")).unwrap(), "2");
    assert_eq!(fs::metadata(t.0.join("a")).unwrap().mode() & 0o777, 0o600);
    assert_eq!(
        entries(&t.0),
        ["..data", &version, "a", "d"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
    assert!(
        version.starts_with("..20") && version.len() == "..2026_11_27_13_01_02.123456789".len(),
        "{version}"
    );
}

#[test]
fn unchanged_payload_touches_nothing_but_mode_change_is_a_change() {
    let t = tmp("same");
    let v = Volume::new(&t.0, false);
    let p = payload(&[("a", "1", 0o600)]);
    let Commit::Written { version } = v.commit(&p).unwrap() else {
        panic!()
    };
    let mtime = fs::metadata(t.0.join(&version)).unwrap().mtime_nsec();
    assert_eq!(
        v.commit(&p).unwrap(),
        Commit::Unchanged {
            version: version.clone()
        }
    );
    assert_eq!(
        fs::metadata(t.0.join(&version)).unwrap().mtime_nsec(),
        mtime
    );
    let Commit::Written { version: v2 } = v.commit(&payload(&[("a", "1", 0o640)])).unwrap() else {
        panic!()
    };
    assert_ne!(v2, version);
    assert!(!t.0.join(&version).exists(), "old version removed");
    assert_eq!(fs::metadata(t.0.join("a")).unwrap().mode() & 0o777, 0o640);
}

#[test]
fn removed_objects_lose_their_links_and_leftovers_are_cleaned() {
    let t = tmp("prune");
    let v = Volume::new(&t.0, false);
    v.commit(&payload(&[("a", "1", 0o600), ("b", "2", 0o600)]))
        .unwrap();
    fs::create_dir(t.0.join("..2020_01_01_00_00_00.000000001")).unwrap();
    std::os::unix::fs::symlink("nowhere", t.0.join("..data_tmp")).unwrap();
    let Commit::Written { version } = v.commit(&payload(&[("a", "1", 0o600)])).unwrap() else {
        panic!()
    };
    assert_eq!(
        entries(&t.0),
        ["..data", &version, "a"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
}

#[test]
fn a_foreign_file_in_the_way_is_refused_before_anything_is_written() {
    let t = tmp("occupied");
    fs::create_dir_all(&t.0).unwrap();
    fs::write(t.0.join("a"), "mine").unwrap();
    let e = Volume::new(&t.0, false)
        .commit(&payload(&[("a", "1", 0o600)]))
        .unwrap_err();
    assert!(matches!(e, VolumeError::Occupied { .. }), "{e}");
    assert_eq!(entries(&t.0), BTreeSet::from(["a".to_string()]));
}

/// A disk directory is refused as not tmpfs; a missing one whose parent is on disk is refused
/// as missing (no volume mounted there), naming the parent it would be created in.
#[test]
fn disk_directories_are_refused_unless_allowed() {
    let here = std::env::current_dir().unwrap();
    let missing = here.join("no-such-dir-unit").join("secrets");
    let on_disk = statfs_type(&here).unwrap() != TMPFS_MAGIC;
    for dir in [&here, &missing] {
        let e = Volume::new(dir, false).check_filesystem();
        if on_disk {
            match (dir == &here, e) {
                (true, Err(VolumeError::NotTmpfs { .. })) => {}
                (false, Err(e @ VolumeError::Missing { .. })) => {
                    let text = e.to_string();
                    assert!(
                        text.starts_with(&format!("{} does not exist", missing.display()))
                            && text.contains(&format!(
                                "and {}, where it would be created, is not on tmpfs",
                                here.display()
                            )),
                        "{text}"
                    );
                }
                (_, e) => panic!("{}: {e:?}", dir.display()),
            }
        }
        assert!(Volume::new(dir, true).check_filesystem().is_ok());
    }
}

#[test]
fn version_names_are_parsed_strictly() {
    let now = new_version_name(std::time::SystemTime::now());
    assert!(is_version_name(&now), "{now}");
    assert!(is_version_name(&new_version_name(std::time::UNIX_EPOCH)));
    for good in [
        "..2026_11_27_13_01_02.123456789",
        "..2020_01_01_00_00_00.000000000",
        "..9999_12_31_23_59_59.999999999",
    ] {
        assert!(is_version_name(good), "{good}");
    }
    for bad in [
        "",
        "..",
        "..data",
        "..data_tmp",
        "..2",
        "2026_11_27_13_01_02.123456789",
        ".2026_11_27_13_01_02.123456789",
        "...2026_11_27_13_01_02.123456789",
        "..2026_11_27_13_01_02.12345678",
        "..2026_11_27_13_01_02.1234567890",
        "..2026_11_27_13_01_02",
        "..2026-11-27_13_01_02.123456789",
        "..2026_11_27T13_01_02.123456789",
        "..2026_11_27_13:01:02.123456789",
        "..2026_11_27_13_01_02_123456789",
        "..2026_11_27_13_01_02.12345678a",
        "..2026_11_27_13_01_02.123456789/",
        "../2026_11_27_13_01_02.12345678",
        "../..2026_11_27_13_01_02.12345",
        " ..2026_11_27_13_01_02.12345678",
        "..2026_00_27_13_01_02.123456789",
        "..2026_13_27_13_01_02.123456789",
        "..2026_11_00_13_01_02.123456789",
        "..2026_11_32_13_01_02.123456789",
        "..2026_11_27_24_01_02.123456789",
        "..2026_11_27_13_60_02.123456789",
        "..2026_11_27_13_01_60.123456789",
        "..2026_11_27_13_01_0٢.123456789",
        // The kubelet's own names carry a random suffix of another length.
        "..2026_11_27_13_01_02.1234",
    ] {
        assert!(!is_version_name(bad), "{bad:?}");
    }
}

fn plant_outside(name: &str) -> Tmp {
    let o = tmp(name);
    fs::create_dir_all(o.0.join("sub")).unwrap();
    fs::write(o.0.join("canary"), "c").unwrap();
    fs::write(o.0.join("sub/canary"), "c").unwrap();
    o
}

fn assert_intact(o: &Tmp) {
    assert_eq!(fs::read_to_string(o.0.join("canary")).unwrap(), "c");
    assert_eq!(fs::read_to_string(o.0.join("sub/canary")).unwrap(), "c");
}

fn listing(dir: &Path) -> BTreeSet<(String, String)> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let link = fs::read_link(e.path()).map(|t| t.display().to_string());
            (
                e.file_name().into_string().unwrap(),
                link.unwrap_or_default(),
            )
        })
        .collect()
}

#[test]
fn a_foreign_data_link_is_refused_and_is_no_current_version() {
    use std::os::unix::fs::symlink;
    let outside = plant_outside("foreign-outside");
    let version = "..2026_01_01_00_00_00.000000000";
    type Plant<'a> = Box<dyn Fn(&Path) + 'a>;
    let cases: Vec<(&str, Plant, &str)> = vec![
        (
            "abs",
            Box::new(|d| symlink(&outside.0, d.join("..data")).unwrap()),
            "a symlink to /dev/shm/",
        ),
        (
            "rel",
            Box::new(|d| symlink("../x/..", d.join("..data")).unwrap()),
            "a symlink to ../x/..",
        ),
        (
            "root",
            Box::new(|d| symlink("/", d.join("..data")).unwrap()),
            "a symlink to /,",
        ),
        (
            "self",
            Box::new(|d| symlink("..data", d.join("..data")).unwrap()),
            "a symlink to ..data,",
        ),
        (
            "dir",
            Box::new(|d| fs::create_dir(d.join("..data")).unwrap()),
            "is a directory,",
        ),
        (
            "file",
            Box::new(|d| fs::write(d.join("..data"), "x").unwrap()),
            "is a regular file,",
        ),
        (
            "vlink",
            Box::new(|d| {
                symlink(&outside.0, d.join(version)).unwrap();
                symlink(version, d.join("..data")).unwrap();
            }),
            "which is a symlink instead of a directory",
        ),
        (
            "vfile",
            Box::new(|d| {
                fs::write(d.join(version), "").unwrap();
                symlink(version, d.join("..data")).unwrap();
            }),
            "which is a regular file instead of a directory",
        ),
        (
            "vmissing",
            Box::new(|d| symlink(version, d.join("..data")).unwrap()),
            "which does not exist",
        ),
        (
            "vslash",
            Box::new(|d| {
                fs::create_dir(d.join(version)).unwrap();
                symlink(format!("{version}/"), d.join("..data")).unwrap();
            }),
            "a symlink to ..2026_01_01_00_00_00.000000000/,",
        ),
    ];
    for (name, plant, found) in cases {
        let t = tmp(&format!("foreign-{name}"));
        fs::create_dir_all(&t.0).unwrap();
        plant(&t.0);
        let before = listing(&t.0);
        let v = Volume::new(&t.0, false);
        assert_eq!(v.current_version(), None, "{name}");
        let e = v.commit(&payload(&[("a", "1", 0o600)])).unwrap_err();
        assert!(matches!(e, VolumeError::Foreign { .. }), "{name}: {e}");
        assert!(e.is_config(), "{name}");
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("{}/..data is ", t.0.display())),
            "{msg}"
        );
        assert!(msg.contains(found), "{name}: {msg}");
        assert_eq!(listing(&t.0), before, "{name}: the directory changed");
        assert_intact(&outside);
    }
}

#[test]
fn leftovers_of_our_names_go_whatever_they_are_without_following() {
    use std::os::unix::fs::symlink;
    let outside = plant_outside("leftover-outside");
    let t = tmp("leftovers");
    let v = Volume::new(&t.0, false);
    let p = payload(&[("a", "1", 0o600)]);
    v.commit(&p).unwrap();
    let tmp_dir = t.0.join("..data_tmp");
    fs::create_dir_all(tmp_dir.join("x/y")).unwrap();
    symlink(&outside.0, tmp_dir.join("evil")).unwrap();
    symlink(&outside.0, tmp_dir.join("x/y/evil")).unwrap();
    let old = t.0.join("..2020_01_01_00_00_00.000000001");
    fs::create_dir(&old).unwrap();
    symlink(&outside.0, old.join("evil")).unwrap();
    symlink(&outside.0, t.0.join("..2020_01_01_00_00_00.000000002")).unwrap();
    fs::write(t.0.join("..2020_01_01_00_00_00.000000003"), "").unwrap();
    // Not of our exact form: not ours to delete.
    fs::create_dir(t.0.join("..2020_01_01_00_00_00.1234")).unwrap();
    let Commit::Unchanged { version } = v.commit(&p).unwrap() else {
        panic!("expected unchanged")
    };
    assert_eq!(
        entries(&t.0),
        ["..data", &version, "a", "..2020_01_01_00_00_00.1234"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
    assert_intact(&outside);
}

#[test]
fn a_retiring_version_survives_the_next_commit_within_its_grace_period() {
    let t = tmp("retiring");
    let v = Volume::new(&t.0, false).keeping_previous();
    let written = |c: Commit| match c {
        Commit::Written { version } => version,
        Commit::Unchanged { .. } => panic!("unchanged"),
    };
    let a = written(v.commit(&payload(&[("a", "1", 0o600)])).unwrap());
    let b = written(v.commit(&payload(&[("a", "2", 0o600)])).unwrap());
    assert!(t.0.join(&a).is_dir(), "kept for retire()");
    // A third version 1.9 s later: `a` is still retiring and must stay readable.
    let c = written(
        v.commit_keeping(&payload(&[("a", "3", 0o600)]), &[&a])
            .unwrap(),
    );
    assert!(t.0.join(&a).is_dir() && t.0.join(&b).is_dir() && t.0.join(&c).is_dir());
    // Without the grace period, the next commit removes what is not current.
    v.commit(&payload(&[("a", "4", 0o600)])).unwrap();
    assert!(!t.0.join(&a).exists() && !t.0.join(&b).exists());
}

#[test]
fn retire_unlinks_a_version_named_link_and_keeps_the_current_version() {
    use std::os::unix::fs::symlink;
    let outside = plant_outside("retire-outside");
    let t = tmp("retire");
    let v = Volume::new(&t.0, false).keeping_previous();
    let Commit::Written { version } = v.commit(&payload(&[("a", "1", 0o600)])).unwrap() else {
        panic!()
    };
    v.retire(&version).unwrap();
    assert!(t.0.join(&version).is_dir(), "the current version stays");
    let planted = "..2020_01_01_00_00_00.000000001";
    symlink(&outside.0, t.0.join(planted)).unwrap();
    v.retire(planted).unwrap();
    assert!(fs::symlink_metadata(t.0.join(planted)).is_err());
    let old = t.0.join("..2020_01_01_00_00_00.000000002");
    fs::create_dir(&old).unwrap();
    symlink(&outside.0, old.join("evil")).unwrap();
    v.retire("..2020_01_01_00_00_00.000000002").unwrap();
    assert!(!old.exists());
    v.retire("..2020_01_01_00_00_00.000000003").unwrap();
    assert_intact(&outside);
    assert_eq!(v.current_version(), Some(version));
}

#[test]
fn a_link_or_fifo_in_the_current_version_is_a_change_and_never_read_through() {
    use std::os::unix::fs::symlink;
    let outside = plant_outside("same-outside");
    let t = tmp("same-links");
    let v = Volume::new(&t.0, false);
    // Same content as the payload would have, were the link followed.
    let p = payload(&[("sub/canary", "c", 0o644), ("a", "1", 0o600)]);
    let Commit::Written { version } = v.commit(&p).unwrap() else {
        panic!()
    };
    fs::remove_dir_all(t.0.join(&version).join("sub")).unwrap();
    symlink(&outside.0, t.0.join(&version).join("sub")).unwrap();
    let Commit::Written { version: v2 } = v.commit(&p).unwrap() else {
        panic!("a symlinked directory counted as unchanged")
    };
    assert_intact(&outside);

    fs::remove_file(t.0.join(&v2).join("a")).unwrap();
    let fifo = std::ffi::CString::new(t.0.join(&v2).join("a").as_os_str().as_bytes()).unwrap();
    // SAFETY: a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    let Commit::Written { .. } = v.commit(&p).unwrap() else {
        panic!("a FIFO counted as unchanged")
    };
    assert_eq!(fs::read_to_string(t.0.join("a")).unwrap(), "1");
    assert_intact(&outside);
}
