//! Planted files: an app container sharing the volume, or whoever prepared the directory,
//! leaves links and leftovers in DIR before secretdrop runs. The attacks are real (real links on
//! /dev/shm, the real binary) and so are their targets: a directory outside DIR holding a canary.
//! secretdrop must never follow a link out of DIR: a `..data` it did not write is refused (init
//! exits 2, nothing changes, probe is not ready), and leftovers of its own naming are removed
//! without following any link in them.

mod common;

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use common::cli::{assert_layout, read, secretdrop, tree, write, Run};
use common::scenario::Pod;
use common::{unique, Bao, Server, TestDir};

/// A version name of secretdrop's exact form, as an app might plant it.
const PLANTED_VERSION: &str = "..2026_01_01_00_00_00.000000000";
const CANARY: &str = "still here";

/// A pod rendering `password` from its own KV path into `pod.out()`.
struct Scene {
    bao: &'static Bao,
    pod: Pod,
    path: String,
    config: String,
}

impl Scene {
    fn new() -> Scene {
        let bao = Bao::shared();
        let path = unique("planted");
        let pod = Pod::reading(bao, &path);
        let config = pod.spc(
            bao,
            &format!(
                "- {{objectName: password, secretPath: secret/data/{path}, secretKey: password}}"
            ),
        );
        let scene = Scene {
            bao,
            pod,
            path,
            config,
        };
        scene.put("first");
        scene
    }

    fn put(&self, password: &str) {
        let kv = format!("password={password}");
        self.bao
            .cli(&["kv", "put", &format!("secret/{}", self.path), &kv]);
    }

    fn out(&self) -> PathBuf {
        self.pod.out()
    }

    fn init(&self) -> Run {
        self.pod.init(&self.config, &[])
    }

    /// One good render, so DIR holds a current version.
    fn rendered() -> Scene {
        let scene = Scene::new();
        scene.init().expect_code(0);
        assert_eq!(read(scene.out().join("password")), "first");
        scene
    }

    /// A new value in Vault and a render of it that succeeds: the commit writes a new version
    /// and removes the old one and the leftovers.
    fn rerender(&self, password: &str) -> Run {
        self.put(password);
        let run = self.init();
        run.expect_code(0);
        assert_eq!(read(self.out().join("password")), password);
        assert_layout(&self.out(), &["password"]);
        run
    }
}

/// A directory holding `canary` and `sub/canary`: what an attacker wants deleted.
fn canary_dir(path: &Path) -> PathBuf {
    std::fs::create_dir_all(path.join("sub")).unwrap();
    write(path, "canary", CANARY);
    write(&path.join("sub"), "canary", CANARY);
    path.to_path_buf()
}

/// Asserts both canaries are intact; `run` is the init that had the chance to touch them.
fn assert_canary(path: &Path, run: Option<&Run>) {
    let how = run.map_or(String::new(), |r| {
        format!(" (init exited {}):\n{}", r.code, r.stderr)
    });
    for f in ["canary", "sub/canary"] {
        let p = path.join(f);
        assert_eq!(
            std::fs::read_to_string(&p).ok().as_deref(),
            Some(CANARY),
            "{} was touched{how}",
            p.display(),
        );
    }
}

/// Plants `..data -> target` in an empty DIR, runs init, and checks it was refused with a
/// message naming `..data` and the target, and that neither DIR nor `outside` changed.
fn refused_with_data_link_to(scene: &Scene, target: &Path, outside: &Path) {
    let out = scene.out();
    std::fs::create_dir_all(&out).unwrap();
    symlink(target, out.join("..data")).unwrap();
    let before = tree(&out);
    let run = scene.init();
    assert_canary(outside, Some(&run));
    assert_eq!(tree(&out), before, "DIR changed:\n{}", run.stderr);
    run.expect_code(2)
        .expect_stderr(&["..data", &target.display().to_string()]);
}

#[test]
fn data_link_to_an_absolute_directory_outside_is_refused() {
    let scene = Scene::new();
    let outside = TestDir::new();
    let target = canary_dir(&outside.join("victim"));
    refused_with_data_link_to(&scene, &target, &target);
}

#[test]
fn data_link_to_a_sibling_directory_is_refused() {
    let scene = Scene::new();
    let sibling = canary_dir(&scene.pod.dir.join("sibling"));
    refused_with_data_link_to(&scene, Path::new("../sibling"), &sibling);
}

#[test]
fn data_link_to_a_version_name_that_is_a_symlink_is_refused() {
    let scene = Scene::new();
    let outside = TestDir::new();
    let target = canary_dir(&outside.join("victim"));
    // A file the payload would compare against, were the link followed.
    write(&target, "password", "attacker's");
    let out = scene.out();
    std::fs::create_dir_all(&out).unwrap();
    symlink(&target, out.join(PLANTED_VERSION)).unwrap();
    refused_with_data_link_to(&scene, Path::new(PLANTED_VERSION), &target);
    assert_eq!(read(target.join("password")), "attacker's");
}

#[test]
fn probe_is_not_ready_when_data_points_at_the_root() {
    // Only probe runs here: a commit that trusted `..data -> /` would walk and delete `/`.
    let dir = TestDir::new();
    let out = dir.join("out");
    std::fs::create_dir(&out).unwrap();
    symlink("/", out.join("..data")).unwrap();
    secretdrop(&["probe", "--dir", out.to_str().unwrap()], &[])
        .expect_code(1)
        .expect_stderr(&["..data is not secretdrop's", "remove it"]);
}

/// A render, then `plant` in DIR, then a render of a new value that must succeed and leave no
/// trace of the planted entry.
fn a_leftover_tmp_link_is_removed(plant: impl FnOnce(&Path)) {
    let scene = Scene::rendered();
    plant(&scene.out().join("..data_tmp"));
    scene.rerender("second");
}

#[test]
fn a_leftover_data_tmp_directory_is_removed_without_following_links_in_it() {
    let outside = TestDir::new();
    let target = canary_dir(&outside.join("victim"));
    a_leftover_tmp_link_is_removed(|tmp| {
        std::fs::create_dir(tmp).unwrap();
        write(tmp, "file", "left");
        symlink(&target, tmp.join("evil")).unwrap();
    });
    assert_canary(&target, None);
}

#[test]
fn a_leftover_data_tmp_regular_file_is_removed() {
    a_leftover_tmp_link_is_removed(|tmp| {
        std::fs::write(tmp, "left").unwrap();
    });
}

#[test]
fn a_leftover_data_tmp_dangling_symlink_is_removed() {
    a_leftover_tmp_link_is_removed(|tmp| symlink("nowhere", tmp).unwrap());
}

#[test]
fn a_version_named_symlink_to_outside_is_unlinked_not_followed() {
    let scene = Scene::rendered();
    let outside = TestDir::new();
    let target = canary_dir(&outside.join("victim"));
    symlink(&target, scene.out().join(PLANTED_VERSION)).unwrap();
    let run = scene.rerender("second");
    assert_canary(&target, Some(&run));
}

#[test]
fn links_planted_inside_an_old_version_are_unlinked_not_followed() {
    let scene = Scene::rendered();
    let outside = TestDir::new();
    let target = canary_dir(&outside.join("victim"));
    let old = scene.out().join(common::cli::current_version(&scene.out()));
    symlink(&target, old.join("evil")).unwrap();
    std::fs::create_dir(old.join("nested")).unwrap();
    symlink(&target, old.join("nested/evil")).unwrap();
    let run = scene.rerender("second");
    assert!(!old.exists(), "the old version was removed");
    assert_canary(&target, Some(&run));
}

#[test]
fn a_stale_visible_name_that_is_not_our_link_is_left_alone() {
    let scene = Scene::new();
    let two = scene.pod.spc(
        scene.bao,
        &format!(
            "- {{objectName: password, secretPath: secret/data/{p}, secretKey: password}}\n- {{objectName: extra, secretPath: secret/data/{p}, secretKey: password}}",
            p = scene.path
        ),
    );
    scene.pod.init(&two, &[]).expect_code(0);
    let out = scene.out();
    // The app replaces the visible `extra` with its own link; the next config drops `extra`.
    std::fs::remove_file(out.join("extra")).unwrap();
    symlink("elsewhere", out.join("extra")).unwrap();
    scene.put("second");
    scene.init().expect_code(0);
    assert_eq!(read(out.join("password")), "second");
    assert_eq!(
        std::fs::read_link(out.join("extra")).unwrap(),
        Path::new("elsewhere"),
        "the app's own link was removed"
    );
}
