use std::collections::BTreeMap;
use std::path::Path;

use proptest::prelude::*;

use super::content_tag;

fn write(dir: &Path, files: &[(&str, &str)]) {
    for (name, content) in files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, content).expect("write");
    }
}

fn tag_of(files: &[(&str, &str)], args: &[(&str, &str)], target: Option<&str>) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), files);
    let args: BTreeMap<String, String> = args
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    content_tag(dir.path(), "Dockerfile", &args, target).expect("tag")
}

const BASE: &[(&str, &str)] = &[
    ("Dockerfile", "FROM scratch\nCOPY . /\n"),
    ("a.txt", "a\n"),
    ("sub/b.txt", "b\n"),
    (".dockerignore", "*.log\n"),
];

#[test]
fn is_stable_across_directories_and_mtimes() {
    let first = tag_of(BASE, &[], None);
    assert!(first.starts_with("kb-") && first.len() == 19, "{first}");
    // A different directory, files written in another order, later mtimes.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut reversed = BASE.to_vec();
    reversed.reverse();
    std::thread::sleep(std::time::Duration::from_millis(20));
    write(dir.path(), &reversed);
    let again = content_tag(dir.path(), "Dockerfile", &BTreeMap::new(), None).expect("tag");
    assert_eq!(first, again);
}

#[test]
fn the_golden_value_does_not_drift() {
    // Fixed inputs, fixed tag: a change here changes every user's tags; bump the version prefix.
    // v2 (the archive's digest, streamed); v1 gave kb-2567a5ecfff05bca.
    assert_eq!(tag_of(BASE, &[("V", "1")], Some("final")), "kb-7bd3f583ae7b7e91");
}

#[test]
fn ignored_files_do_not_count() {
    let mut with_log = BASE.to_vec();
    with_log.push(("debug.log", "noise"));
    assert_eq!(tag_of(BASE, &[], None), tag_of(&with_log, &[], None));
}

#[test]
fn each_input_changes_it() {
    let base = tag_of(BASE, &[], None);
    let cases: Vec<(&str, String)> = vec![
        (
            "file content",
            tag_of(&[BASE[0], ("a.txt", "A\n"), BASE[2], BASE[3]], &[], None),
        ),
        (
            "file path",
            tag_of(&[BASE[0], ("c.txt", "a\n"), BASE[2], BASE[3]], &[], None),
        ),
        (
            "dockerfile",
            tag_of(
                &[("Dockerfile", "FROM scratch\n"), BASE[1], BASE[2], BASE[3]],
                &[],
                None,
            ),
        ),
        (
            "dockerignore",
            tag_of(&[BASE[0], BASE[1], BASE[2], (".dockerignore", "")], &[], None),
        ),
        (
            "added file",
            tag_of(&[BASE[0], BASE[1], BASE[2], BASE[3], ("new", "")], &[], None),
        ),
        ("build arg", tag_of(BASE, &[("V", "1")], None)),
        ("build arg value", tag_of(BASE, &[("V", "2")], None)),
        ("target", tag_of(BASE, &[], Some("final"))),
    ];
    for (what, tag) in &cases {
        assert_ne!(&base, tag, "{what} did not change the tag");
    }
    // Build arg name/value boundaries are unambiguous.
    assert_ne!(
        tag_of(BASE, &[("AB", "C")], None),
        tag_of(BASE, &[("A", "BC")], None)
    );
}

#[test]
fn the_executable_bit_counts() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), BASE);
    let before = content_tag(dir.path(), "Dockerfile", &BTreeMap::new(), None).expect("tag");
    std::fs::set_permissions(dir.path().join("a.txt"), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    let after = content_tag(dir.path(), "Dockerfile", &BTreeMap::new(), None).expect("tag");
    assert_ne!(before, after);
}

#[test]
fn a_missing_dockerfile_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = content_tag(dir.path(), "Dockerfile", &BTreeMap::new(), None).expect_err("no dockerfile");
    assert_eq!(err.kind(), "context");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    /// Same inputs, two directories: same tag; one byte changed in one file: another tag.
    #[test]
    fn same_inputs_same_tag_one_change_another(
        files in proptest::collection::btree_map("[a-z]{1,8}", proptest::collection::vec(any::<u8>(), 0..64), 1..6),
        pick in any::<prop::sample::Index>(),
        arg in "[A-Z]{1,4}",
    ) {
        let dirs = [tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir")];
        for d in &dirs {
            std::fs::write(d.path().join("Dockerfile"), "FROM scratch\n").expect("write");
            for (name, content) in &files {
                std::fs::write(d.path().join(format!("f_{name}")), content).expect("write");
            }
        }
        let args: BTreeMap<String, String> = [(arg, "x".to_owned())].into_iter().collect();
        let a = content_tag(dirs[0].path(), "Dockerfile", &args, None).expect("tag");
        let b = content_tag(dirs[1].path(), "Dockerfile", &args, None).expect("tag");
        prop_assert_eq!(&a, &b);
        let (name, content) = files.iter().nth(pick.index(files.len())).expect("a file");
        let mut changed = content.clone();
        changed.push(0x5a);
        std::fs::write(dirs[1].path().join(format!("f_{name}")), changed).expect("write");
        let c = content_tag(dirs[1].path(), "Dockerfile", &args, None).expect("tag");
        prop_assert_ne!(a, c);
    }
}
